"""Time the compiled local aggregation op against its memory floor and its
PyTorch reference.

    python tools/analysis/benchmark_op.py [--device cpu|cuda] [--batch 8]
        [--dtypes float32 float16 bfloat16] [--previous-ext FILE.so]
        [--json OUT]

Shapes: CoTNet-50's four stages (K=3, stride 1, padding 1, G=C/8) at
``--batch``. For each precision and stage, the forward and the backward
(both gradients, from a retained graph) of the compiled op and of the
unfold reference: median time of ``--repeats`` after ``--warmup``, with the
caches flushed before every timed call; peak memory (CUDA: the allocator's
peak; CPU: the growth of the peak resident set, in a fresh forked process).
Against the memory floor: the bytes the op must move (forward 3.125 E
elements: input, weight, output; backward 5.25 E: output gradient, input,
weight, both gradients; E = N*C*H*W) over the device copy bandwidth
measured in the same run; ``floor_ratio`` is time over that floor.
``--previous-ext`` also times the kernels of an earlier commit, built by
tools/analysis/build_previous_kernels.py, interleaved with the current
ones; ``vs_previous`` is their time over the current kernels'. ``overhead_ms``
is the time of the same call on a one-pixel input (dispatch, autograd and
kernel launches, which a GPU's small stages are made of);
``net_floor_ratio`` is (time - overhead) over the floor.
"""
import argparse
import importlib.util
import json
import os.path as osp

import torch

from mmcot.analysis import (cache_flusher, copy_bandwidth_gbps, device_name,
                            markdown_table, median_ms, peak_memory_mib,
                            run_isolated)
from mmcot.fileio import atomic_write
from mmcot.ops import ext_available, local_aggregation_reference

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))
KERNEL, STRIDE, PADDING, DILATION = [3, 3], [1, 1], [1, 1], [1, 1]
#: elements moved per element of the input, by direction (G = C/8, K = 3)
FLOOR_ELEMENTS = {
    'forward': 1 + 9 / 8 + 1,
    'backward': 1 + 1 + 9 / 8 + 1 + 9 / 8
}
DTYPES = ('float32', 'float64', 'float16', 'bfloat16')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + ' ' +
        __doc__.splitlines()[1].strip())
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtypes',
                        nargs='+',
                        default=['float32'],
                        choices=DTYPES)
    parser.add_argument(
        '--previous-ext',
        help='mmcot_previous_ext.so of build_previous_kernels.py: time '
        'those kernels too')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no GPU is visible')
    if not args.device.startswith('cuda') and {'float16', 'bfloat16'} & set(
            args.dtypes):
        parser.error('float16 / bfloat16 are measured on GPUs only')
    if min(args.batch, args.repeats) < 1 or args.warmup < 0:
        parser.error('--batch and --repeats must be >= 1, --warmup >= 0')
    if args.previous_ext:
        try:
            PreviousKernels.ext = load_module(args.previous_ext)
        except (ImportError, OSError) as e:
            parser.error(f'--previous-ext {args.previous_ext}: cannot load '
                         f'it ({e})')
        IMPLS['previous'] = PreviousKernels.apply
    return args


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


class PreviousKernels(torch.autograd.Function):
    """The op through an earlier commit's extension (``ext``)."""
    ext = None

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return PreviousKernels.ext.local_aggregation_forward(
            x, w, KERNEL, STRIDE, PADDING, DILATION)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return tuple(
            PreviousKernels.ext.local_aggregation_backward(
                grad.contiguous(), x, w, KERNEL, STRIDE, PADDING, DILATION,
                True, True))


IMPLS = {'compiled': compiled, 'reference': reference}


def make_inputs(batch, channels, size, dtype, device):
    """Input (N, C, H, W) and weights (N, 1, C/8, 9, H, W) of one stage."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g)
    w = torch.randn(batch, 1, channels // 8, 9, size, size, generator=g)
    return (x.to(device, getattr(torch, dtype)).requires_grad_(),
            w.to(device, getattr(torch, dtype)).requires_grad_())


def directions_ms(fn, x, w, args, before=None) -> dict:
    """Median forward time and backward time (both gradients, from a
    retained graph) of ``fn(x, w)`` in ms."""
    grad = torch.ones_like(x)
    result = dict(
        forward_ms=median_ms(lambda: fn(x, w), args.device, args.warmup,
                             args.repeats, before))
    y = fn(x, w)
    result['backward_ms'] = median_ms(
        lambda: torch.autograd.grad(y, (x, w), grad, retain_graph=True),
        args.device, args.warmup, args.repeats, before)
    return result


def run_case(impl, shape, dtype, args):
    """Median forward and backward time (ms), the time of a call on a
    one-pixel input (what a call costs besides moving the data: dispatch,
    autograd, launches) and peak memory (MiB) of the forward and of
    forward + backward, for one implementation."""
    x, w = make_inputs(args.batch, *shape, dtype, args.device)
    fn = IMPLS[impl]

    def forward():
        return fn(x, w)

    def forward_backward():
        torch.autograd.grad(fn(x, w), (x, w), torch.ones_like(x))

    if args.device.startswith('cuda'):
        forward_backward()  # CUDA context and kernels are not the op's
    result = dict(
        forward_MiB=peak_memory_mib(forward, args.device),
        forward_backward_MiB=peak_memory_mib(forward_backward, args.device),
        **directions_ms(fn, x, w, args, before=cache_flusher(args.device)))
    tiny = make_inputs(1, 8, 1, dtype, args.device)
    for direction, ms in directions_ms(fn, *tiny, args).items():
        result[direction.replace('_ms', '_overhead_ms')] = ms
    return result


def measure(impl, shape, dtype, args):
    if args.device.startswith('cuda'):
        return run_case(impl, shape, dtype, args)
    return run_isolated(run_case, impl, shape, dtype, args)


def stage_results(shape, dtype, bandwidth, args) -> dict:
    """Both implementations at one stage and precision, against the
    floor."""
    channels, size = shape
    itemsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    elements = args.batch * channels * size * size
    results = {impl: measure(impl, shape, dtype, args) for impl in IMPLS}
    compiled_, reference_ = results['compiled'], results['reference']
    row = dict(dtype=dtype, C=channels, H=size, batch=args.batch)
    for direction, per_element in FLOOR_ELEMENTS.items():
        moved = per_element * elements * itemsize
        ms = compiled_[f'{direction}_ms']
        floor_ms = moved / bandwidth / 1e6
        overhead_ms = compiled_[f'{direction}_overhead_ms']
        row[direction] = dict(
            ms=ms,
            floor_ms=floor_ms,
            floor_ratio=ms / floor_ms,
            overhead_ms=overhead_ms,
            net_floor_ratio=max(ms - overhead_ms, 0) / floor_ms,
            GBps=moved / ms / 1e6,
            reference_ms=reference_[f'{direction}_ms'],
            vs_reference=reference_[f'{direction}_ms'] / ms)
        if 'previous' in results:
            previous_ms = results['previous'][f'{direction}_ms']
            row[direction].update(
                previous_ms=previous_ms,
                previous_floor_ratio=previous_ms / floor_ms,
                vs_previous=previous_ms / ms)
    for key in ('forward_MiB', 'forward_backward_MiB'):
        row[key] = compiled_[key]
        row[f'reference_{key}'] = reference_[key]
    return row


def table(rows) -> str:
    keys = ('ms', 'floor_ratio', 'net_floor_ratio', 'vs_reference',
            'vs_previous')
    return markdown_table([
        {
            'dtype': r['dtype'],
            'C x H': f'{r["C"]} x {r["H"]}',
            **{
                f'{short} {key}': r[direction][key]
                for direction, short in (('forward', 'fwd'),
                                         ('backward', 'bwd'))
                for key in keys if key in r[direction]
            },
            'fwd+bwd MiB': r['forward_backward_MiB'],
            'ref MiB': r['reference_forward_backward_MiB'],
        } for r in rows
    ])


def main():
    args = parse_args()
    if not ext_available():
        raise SystemExit('error: mmcot._ext is not built: nothing to compare')
    if args.device.startswith('cuda'):
        bandwidth = copy_bandwidth_gbps(args.device)
    else:  # torch's CPU threads must not start before the forks
        bandwidth = run_isolated(copy_bandwidth_gbps, args.device, 256)
    rows = [
        stage_results(shape, dtype, bandwidth, args)
        for dtype in args.dtypes for shape in STAGES
    ]
    print(f'local_aggregation, batch {args.batch}, '
          f'{device_name(args.device)}; median of {args.repeats} after '
          f'{args.warmup} warm-up, caches flushed; copy bandwidth '
          f'{bandwidth:.1f} GB/s; floor_ratio = time / (bytes to move / '
          'copy bandwidth); vs_reference = reference time / time')
    print(table(rows))
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump(dict(device=device_name(args.device),
                           torch=torch.__version__,
                           copy_GBps=bandwidth,
                           batch=args.batch,
                           repeats=args.repeats,
                           previous_ext=args.previous_ext,
                           rows=rows),
                      f,
                      indent=1)


if __name__ == '__main__':
    main()
