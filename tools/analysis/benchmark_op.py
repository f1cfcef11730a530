"""Time the compiled local aggregation op against its memory floor and its
PyTorch reference.

    python tools/analysis/benchmark_op.py [--device cpu|cuda] [--batch 8]
        [--model CoTNet-50] [--dtypes float32 float16 bfloat16]
        [--previous-ext FILE.so] [--malloc-defaults] [--json OUT]

Shapes: the distinct calls of the op in ``--model``'s backbone on
``--batch`` 224 x 224 images (K=3, stride 1, padding 1, G=C/8; CoTNet-50:
its four stages, 64 x 56 to 512 x 7; a CoXt layer of cardinality 2 makes
calls of half the channels on twice the batch). For each precision and
shape, the forward and the backward (both gradients, from a retained graph)
of the compiled op and of the unfold reference: median time of
``--repeats`` after ``--warmup``, with the caches flushed before every
timed call (on a CPU, malloc reusing freed memory: no page faults in the
timed calls, see mmcot.analysis.reuse_freed_cpu_memory; ``--malloc-defaults``
keeps glibc's defaults, and the JSON says which in
``freed_memory_reused``); peak memory
(CUDA: the allocator's peak; CPU: the growth of the peak resident set, in
a fresh forked process).
Against the memory floor: the bytes the op must move (forward 3.125 E
elements: input, weight, output; backward 5.25 E: output gradient, input,
weight, both gradients; E = N*C*H*W) over the device copy bandwidth
measured in the same run; ``floor_ratio`` is time over that floor.
``--previous-ext`` also times the kernels of an earlier commit, built by
tools/analysis/build_previous_kernels.py, the same way (each
implementation and shape in a process of its own); ``vs_previous`` is
their time over the current kernels'.
``--variant-ext`` times variants of the current kernels built by
tools/analysis/build_kernel_variants.py the same way. Both are checked
against the current kernels on the same inputs (``previous_error``,
``error``: the largest difference of the output, and of the gradients, over
the largest value of the current kernels'); past ``AGREEMENT_EPS`` eps of
the dtype the benchmark still writes its results, then exits 1 naming
them. ``overhead_ms`` is the time of the same call on a one-pixel input,
caches flushed before it too (dispatch, autograd and kernel launches with
their code and state evicted, which small stages are largely made of);
``net_floor_ratio`` is (time - overhead) over the floor. Two baselines
from PyTorch, timed the same way (caches flushed) at each stage, each over
its own floor: ``copy``, one copy of the stage's input into a buffer
allocated before (2 E elements), what one call that only moves data
reaches at that size; ``depthwise``, the nearest ATen op, a 3 x 3
depthwise convolution of the input (groups = C, padding 1; forward 2 E,
backward 3 E elements: its weights are 9 C), forward and backward (both
gradients) as the op's, with its one-pixel ``depthwise_overhead_ms``;
``vs_depthwise`` is its time over the op's. On a GPU,
``kernel_ms`` is the device time of the op's kernels alone per call (the
profiler's CUDA trace, same flushed calls), and ``kernel_floor_ratio`` /
``kernel_vs_previous`` compare kernels with the floor and with each other.
"""
import importlib.util
import json
import os.path as osp
from typing import Callable

import torch
import torch.nn.functional as F

from mmcot.analysis import (add_malloc_defaults_argument, cache_flusher,
                            copy_bandwidth_gbps, device_name, isolated_on_cpu,
                            markdown_table, median_ms, peak_memory_mib,
                            profiled_ms, reuse_freed_cpu_memory)
from mmcot.analysis.classifiers import COT_NAMES, build_classifier
from mmcot.cli import ToolArgumentParser, check_device, check_output_file
from mmcot.deployment import relative_error
from mmcot.fileio import atomic_write
from mmcot.ops import ext_available, local_aggregation_reference

KERNEL, STRIDE, PADDING, DILATION = [3, 3], [1, 1], [1, 1], [1, 1]
#: elements moved per element of the input, by direction (G = C/8, K = 3)
FLOOR_ELEMENTS = {
    'forward': 1 + 9 / 8 + 1,
    'backward': 1 + 1 + 9 / 8 + 1 + 9 / 8
}
#: the same for the baselines: a copy, a 3 x 3 depthwise convolution
COPY_FLOOR_ELEMENTS = 2
DEPTHWISE_FLOOR_ELEMENTS = {'forward': 2, 'backward': 3}
#: (N, C, H) of the input whose time is a call's fixed cost
ONE_PIXEL = (1, 8, 1)
DTYPES = ('float32', 'float64', 'float16', 'bfloat16')
#: the most another build of the kernels (previous, variant) may differ from
#: the shipped ones, relative to their largest value, in eps of the dtype
#: (other summation orders over 9 taps and C/G channels)
AGREEMENT_EPS = 16


def parse_args():
    parser = ToolArgumentParser(
        description=__doc__.splitlines()[0] + ' ' +
        __doc__.splitlines()[1].strip())
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--model',
        default='CoTNet-50',
        choices=list(COT_NAMES.values()),
        metavar='MODEL',
        help='time the op at the shapes of this model (default: CoTNet-50): '
        f'{", ".join(COT_NAMES.values())}')
    parser.add_argument('--dtypes',
                        nargs='+',
                        default=['float32'],
                        choices=DTYPES)
    parser.add_argument(
        '--previous-ext',
        help='mmcot_previous_ext.so of build_previous_kernels.py: time '
        'those kernels too')
    parser.add_argument(
        '--variant-ext',
        nargs='+',
        default=[],
        metavar='FILE',
        help='mmcot_kernels_<name>.so of build_kernel_variants.py: time '
        'those kernels too')
    add_malloc_defaults_argument(parser)
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    check_device(parser, args.device)
    check_output_file(parser, args.json, '--json')
    if not args.device.startswith('cuda') and {'float16', 'bfloat16'} & set(
            args.dtypes):
        parser.error('float16 / bfloat16 are measured on GPUs only')
    if min(args.batch, args.repeats) < 1 or args.warmup < 0:
        parser.error('--batch and --repeats must be >= 1, --warmup >= 0')
    args.reuse_freed_memory = not (args.device.startswith('cuda')
                                   or args.malloc_defaults)
    modules = [('previous', args.previous_ext)] if args.previous_ext else []
    modules += [(variant_name(path), path) for path in args.variant_ext]
    for impl, path in modules:
        try:
            IMPLS[impl] = extension_impl(load_module(path))
        except (ImportError, OSError) as e:
            option = '--previous-ext' if impl == 'previous' else \
                '--variant-ext'
            parser.error(f'{option} {path}: cannot load it ({e})')
    return args


def variant_name(path: str) -> str:
    """``variant:<name>`` of a module file ``mmcot_kernels_<name>.so``."""
    module = osp.basename(path).split('.')[0]
    return 'variant:' + module.replace('mmcot_kernels_', '', 1)


def load_module(path: str):
    """The extension module built as file ``path``."""
    name = osp.basename(path).split('.')[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError('not a Python extension module')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compiled(x, w):
    return torch.ops.mmcot.local_aggregation(x, w, KERNEL, STRIDE, PADDING,
                                             DILATION)


def reference(x, w):
    return local_aggregation_reference(x, w, KERNEL, STRIDE, PADDING, DILATION)


def extension_impl(ext) -> Callable:
    """The op through the entry points ``local_aggregation_forward`` /
    ``_backward`` of a separately built module ``ext`` (an earlier commit's
    kernels, or a variant of the current ones)."""

    class Op(torch.autograd.Function):

        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return ext.local_aggregation_forward(x, w, KERNEL, STRIDE,
                                                 PADDING, DILATION)

        @staticmethod
        def backward(ctx, grad):
            x, w = ctx.saved_tensors
            return tuple(
                ext.local_aggregation_backward(grad.contiguous(), x, w,
                                               KERNEL, STRIDE, PADDING,
                                               DILATION, True, True))

    return Op.apply


IMPLS = {'compiled': compiled, 'reference': reference}


def op_shapes(model: str) -> list:
    """(batch per image, C, H) of each distinct call of the op in the
    backbone of ``model`` on 224 x 224 images, in order."""
    from mmcot.ops import LocalAggregation
    shapes = []

    def record(module, inputs):
        values, weight = inputs[:2]  # then the CoT layer's GroupNorm
        if weight.shape[1:4] != (1, values.shape[1] // 8, 9) or (
                values.shape[2] != values.shape[3]):
            raise RuntimeError(f'{model}: an op call of shapes '
                               f'{tuple(values.shape)}, '
                               f'{tuple(weight.shape)} is not of the form '
                               'this benchmark times')
        shape = tuple(values.shape[:3])
        if shape not in shapes:
            shapes.append(shape)

    backbone = build_classifier(model).backbone.eval()
    for module in backbone.modules():
        if isinstance(module, LocalAggregation):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        backbone(torch.zeros(1, 3, 224, 224))
    return shapes


def make_inputs(batch, channels, size, dtype, device):
    """Input (N, C, H, W) and weights (N, 1, C/8, 9, H, W) of one stage."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g)
    w = torch.randn(batch, 1, channels // 8, 9, size, size, generator=g)
    return (x.to(device, getattr(torch, dtype)).requires_grad_(),
            w.to(device, getattr(torch, dtype)).requires_grad_())


def disagreement(fn, x, w) -> dict:
    """How far ``fn``'s output ('forward') and gradients ('backward', the
    larger of the two) lie from the shipped kernels' on the same inputs
    (:func:`mmcot.deployment.relative_error`: relative to their largest
    magnitude, inf for a NaN or an inf on either side)."""

    def run(f):
        out = f(x, w)
        grad = torch.ones_like(out)
        return [out.detach(), *torch.autograd.grad(out, (x, w), grad)]

    errors = [relative_error(*pair) for pair in zip(run(fn), run(compiled))]
    return dict(forward=errors[0], backward=max(errors[1:]))


def directions_ms(fn, x, w, args, before=None, kernels=False) -> dict:
    """Median forward time and backward time (both gradients, from a
    retained graph) of ``fn(x, w)`` in ms; with ``kernels``, also the
    device time of the op's kernels per call (GPU)."""
    grad = torch.ones_like(x)
    calls = dict(forward=lambda: fn(x, w))
    y = fn(x, w)
    calls['backward'] = lambda: torch.autograd.grad(
        y, (x, w), grad, retain_graph=True)
    result = {}
    for direction, call in calls.items():
        result[f'{direction}_ms'] = median_ms(call, args.device, args.warmup,
                                              args.repeats, before)
        if kernels:
            result[f'{direction}_kernel_ms'] = profiled_ms(
                call, args.device, args.repeats, 'local_aggregation', before)
    return result


def timed_directions(fn, inputs, one_pixel, args, before,
                     kernels=False) -> dict:
    """:func:`directions_ms` of ``fn`` on ``inputs`` and, as
    ``forward_overhead_ms`` / ``backward_overhead_ms``, on the one-pixel
    ``one_pixel`` (what a call costs besides moving the data: dispatch,
    autograd, launches, with their code and state evicted as the data
    are)."""
    result = directions_ms(fn, *inputs, args, before=before, kernels=kernels)
    for direction, ms in directions_ms(fn, *one_pixel, args,
                                       before=before).items():
        result[direction.replace('_ms', '_overhead_ms')] = ms
    return result


def baselines_ms(shape, dtype, args) -> dict:
    """At op shape ``shape`` (N, C, H), the median times (ms) of PyTorch's
    baselines, timed as the op (:func:`run_case`): ``copy_ms``, copying the
    input into a buffer allocated before; ``depthwise_forward_ms`` /
    ``_backward_ms``, a 3 x 3 depthwise convolution of the input, and
    ``depthwise_forward_overhead_ms`` / ``_backward_overhead_ms``, of a
    one-pixel input; whether malloc kept freed memory
    (``freed_memory_reused``)."""
    result = dict(freed_memory_reused=bool(args.reuse_freed_memory
                                           and reuse_freed_cpu_memory()))
    flush = cache_flusher(args.device)

    def depthwise_inputs(batch, channels, size):
        x = make_inputs(batch, channels, size, dtype, args.device)[0]
        return x, torch.ones(channels, 1, 3, 3).to(x).requires_grad_()

    def depthwise(x, kernel):
        return F.conv2d(x, kernel, padding=1, groups=x.shape[1])

    x, kernel = depthwise_inputs(*shape)
    out = torch.empty_like(x)
    result['copy_ms'] = median_ms(lambda: out.copy_(x.detach()), args.device,
                                  args.warmup, args.repeats, flush)
    for key, ms in timed_directions(depthwise, (x, kernel),
                                    depthwise_inputs(*ONE_PIXEL), args,
                                    flush).items():
        result[f'depthwise_{key}'] = ms
    return result


def run_case(impl, shape, dtype, args):
    """At op shape ``shape`` (N, C, H): median forward and backward time
    (ms), on a GPU the time of the op's kernels alone (an implementation of
    our kernels, not the reference), the time of a call on a one-pixel
    input (:func:`timed_directions`), each after a cache flush, and peak
    memory (MiB) of the forward and of forward + backward, for one
    implementation; whether malloc kept freed memory for the timed calls
    (``freed_memory_reused``)."""
    x, w = make_inputs(*shape, dtype, args.device)
    fn = IMPLS[impl]

    def forward():
        return fn(x, w)

    def forward_backward():
        torch.autograd.grad(fn(x, w), (x, w), torch.ones_like(x))

    cuda = args.device.startswith('cuda')
    if cuda:
        forward_backward()  # CUDA context and kernels are not the op's
    result = dict(
        forward_MiB=peak_memory_mib(forward, args.device),
        forward_backward_MiB=peak_memory_mib(forward_backward, args.device))
    # after the peak resident set, which reuse would hide; glibc only
    result['freed_memory_reused'] = bool(args.reuse_freed_memory
                                         and reuse_freed_cpu_memory())
    result.update(
        timed_directions(fn, (x, w),
                         make_inputs(*ONE_PIXEL, dtype, args.device),
                         args,
                         cache_flusher(args.device),
                         kernels=cuda and impl != 'reference'))
    if impl not in ('compiled', 'reference'):  # another build of the kernels
        for direction, error in disagreement(fn, x, w).items():
            result[f'{direction}_error'] = error
    return result


def measure(impl, shape, dtype, args):
    return isolated_on_cpu(args.device, run_case, impl, shape, dtype, args)


def stage_results(shape, dtype, bandwidth, args) -> dict:
    """Both implementations at one op shape (batch per image, C, H) and
    precision, against the floor."""
    per_image, channels, size = shape
    batch = per_image * args.batch
    itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    elements = batch * channels * size * size
    results = {
        impl: measure(impl, (batch, channels, size), dtype, args)
        for impl in IMPLS
    }
    baselines = isolated_on_cpu(args.device, baselines_ms,
                                (batch, channels, size), dtype, args)
    compiled_, reference_ = results['compiled'], results['reference']
    row = dict(dtype=dtype,
               C=channels,
               H=size,
               batch=batch,
               freed_memory_reused=all(
                   r['freed_memory_reused']
                   for r in [*results.values(), baselines]))

    def floor_of(per_element: float) -> float:
        """ms to move ``per_element`` * E elements at the bandwidth."""
        return per_element * elements * itemsize / bandwidth / 1e6

    for direction, per_element in FLOOR_ELEMENTS.items():
        ms = compiled_[f'{direction}_ms']
        floor_ms = floor_of(per_element)
        overhead_ms = compiled_[f'{direction}_overhead_ms']
        row[direction] = dict(
            ms=ms,
            floor_ms=floor_ms,
            floor_ratio=ms / floor_ms,
            overhead_ms=overhead_ms,
            net_floor_ratio=max(ms - overhead_ms, 0) / floor_ms,
            GBps=per_element * elements * itemsize / ms / 1e6,
            reference_ms=reference_[f'{direction}_ms'],
            vs_reference=reference_[f'{direction}_ms'] / ms)
        kernel_ms = compiled_.get(f'{direction}_kernel_ms')
        if kernel_ms:
            row[direction].update(kernel_ms=kernel_ms,
                                  kernel_floor_ratio=kernel_ms / floor_ms)
        if 'previous' in results:
            previous = results['previous']
            previous_ms = previous[f'{direction}_ms']
            row[direction].update(
                previous_ms=previous_ms,
                previous_floor_ratio=previous_ms / floor_ms,
                vs_previous=previous_ms / ms,
                previous_error=previous[f'{direction}_error'])
            previous_kernel_ms = previous.get(f'{direction}_kernel_ms')
            if kernel_ms and previous_kernel_ms:
                row[direction].update(
                    previous_kernel_ms=previous_kernel_ms,
                    kernel_vs_previous=previous_kernel_ms / kernel_ms)
        for impl, result in results.items():
            if not impl.startswith('variant:'):
                continue
            variant_ms = result.get(f'{direction}_kernel_ms') or result[
                f'{direction}_ms']
            current_ms = kernel_ms or ms
            row.setdefault('variants', {}).setdefault(
                impl.split(':', 1)[1], {})[direction] = dict(
                    ms=result[f'{direction}_ms'],
                    kernel_ms=result.get(f'{direction}_kernel_ms'),
                    floor_ratio=variant_ms / floor_ms,
                    vs_current=variant_ms / current_ms,
                    error=result[f'{direction}_error'])
    row['copy'] = dict(ms=baselines['copy_ms'],
                       floor_ratio=baselines['copy_ms'] /
                       floor_of(COPY_FLOOR_ELEMENTS))
    for direction, per_element in DEPTHWISE_FLOOR_ELEMENTS.items():
        depthwise_ms = baselines[f'depthwise_{direction}_ms']
        row[direction].update(
            depthwise_ms=depthwise_ms,
            depthwise_overhead_ms=baselines[
                f'depthwise_{direction}_overhead_ms'],
            depthwise_floor_ratio=depthwise_ms / floor_of(per_element),
            vs_depthwise=depthwise_ms / row[direction]['ms'])
    for key in ('forward_MiB', 'forward_backward_MiB'):
        row[key] = compiled_[key]
        row[f'reference_{key}'] = reference_[key]
    return row


def table(rows) -> str:
    keys = ('ms', 'floor_ratio', 'net_floor_ratio', 'kernel_ms',
            'kernel_floor_ratio', 'vs_reference', 'depthwise_floor_ratio',
            'vs_depthwise', 'vs_previous', 'kernel_vs_previous')
    return markdown_table([
        {
            'dtype': r['dtype'],
            'N x C x H': f'{r["batch"]} x {r["C"]} x {r["H"]}',
            **{
                f'{short} {key}': r[direction][key]
                for direction, short in (('forward', 'fwd'),
                                         ('backward', 'bwd'))
                for key in keys if key in r[direction]
            },
            'copy floor_ratio': r['copy']['floor_ratio'],
            'fwd+bwd MiB': r['forward_backward_MiB'],
            'ref MiB': r['reference_forward_backward_MiB'],
        } for r in rows
    ])


def variants_table(rows) -> str:
    """Each variant's floor ratio and time over the current kernels' (on
    kernel time where measured), by precision and stage."""
    return markdown_table([
        {
            'dtype': r['dtype'],
            'C x H': f'{r["C"]} x {r["H"]}',
            'variant': name,
            **{
                f'{short} {key}': directions[direction][key]
                for direction, short in (('forward', 'fwd'),
                                         ('backward', 'bwd'))
                for key in ('floor_ratio', 'vs_current')
            },
            **{
                f'{short} error': f'{directions[direction]["error"]:.1e}'
                for direction, short in (('forward', 'fwd'),
                                         ('backward', 'bwd'))
            },
        } for r in rows for name, directions in r.get('variants', {}).items()
    ])


def disagreements(rows) -> list:
    """'<implementation> <direction> <dtype> C x H: error' of each build of
    the kernels other than the shipped one whose results lie further from
    theirs than AGREEMENT_EPS eps of the dtype."""
    found = []
    for r in rows:
        tolerance = AGREEMENT_EPS * torch.finfo(getattr(torch,
                                                        r['dtype'])).eps
        errors = [('previous', direction, r[direction]['previous_error'])
                  for direction in FLOOR_ELEMENTS
                  if 'previous_error' in r[direction]]
        errors += [(f'variant {name}', direction, result['error'])
                   for name, directions in r.get('variants', {}).items()
                   for direction, result in directions.items()]
        found += [
            f'{impl} {direction} {r["dtype"]} {r["C"]} x {r["H"]}: '
            f'{error:.2e}' for impl, direction, error in errors
            if not error <= tolerance
        ]
    return found


def main():
    args = parse_args()
    if not ext_available():
        raise SystemExit('error: mmcot._ext is not built: nothing to compare')
    bandwidth = isolated_on_cpu(args.device, copy_bandwidth_gbps, args.device)
    shapes = isolated_on_cpu(args.device, op_shapes, args.model)
    rows = [
        stage_results(shape, dtype, bandwidth, args)
        for dtype in args.dtypes for shape in shapes
    ]
    reused = all(row['freed_memory_reused'] for row in rows)
    print(f'local_aggregation at {args.model}\'s shapes, {args.batch} '
          f'images, {device_name(args.device)}; median of {args.repeats} '
          f'after {args.warmup} warm-up, caches flushed'
          f'{", malloc keeping freed memory" if reused else ""}; copy '
          f'bandwidth {bandwidth:.1f} GB/s; floor_ratio = time / (bytes to '
          'move / copy bandwidth); vs_reference = reference time / time; '
          'depthwise: a 3 x 3 depthwise convolution, copy: one copy of the '
          'input, timed the same way')
    print(table(rows))
    if any('variants' in row for row in rows):
        print('\nvariants (vs_current: variant time / current time)')
        print(variants_table(rows))
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump(dict(device=device_name(args.device),
                           torch=torch.__version__,
                           model=args.model,
                           copy_GBps=bandwidth,
                           batch=args.batch,
                           repeats=args.repeats,
                           freed_memory_reused=reused,
                           previous_ext=args.previous_ext,
                           variant_ext=args.variant_ext,
                           rows=rows),
                      f,
                      indent=1)
    wrong = disagreements(rows)
    if wrong:
        raise SystemExit('error: results unlike the shipped kernels\' '
                         f'(relative error over {AGREEMENT_EPS} eps): ' +
                         '; '.join(wrong))


if __name__ == '__main__':
    main()
