"""Inference speed of CoTNet-50 and ResNet-50 as deployed: eager PyTorch,
``torch.compile`` and onnxruntime, measured in one run.

    python tools/analysis/benchmark_deploy.py [--models CoTNet-50 ResNet-50]
        [--batch 8] [--repeats 10] [--malloc-defaults] [--json OUT]

Both models are ImageNet classifiers (backbone, pooling, 1000-way head),
treated the same: fp32, 224 x 224, eval mode, the same threads
(onnxruntime's intra-op threads = torch's). Per model and runtime:
throughput at ``--batch`` (images/s) and latency at batch 1 (ms), medians of
``--repeats`` timed calls taken in turns across models and runtimes (so
that drift in the machine's speed hits all alike), after warm-up, with the
ratio to ResNet-50 and the quartiles of its per-round ratios; the
compile and export times; and the largest difference of the compiled model
and of the ONNX file from eager, relative to the largest output (the full
CoTNet-50 check of torch.compile and ONNX). The timed calls run with malloc
keeping the memory a call frees for the next, as benchmark.py's (eager and
compiled forwards otherwise take tens of thousands of first-touch page
faults each; onnxruntime has its own arena); ``--malloc-defaults`` keeps
glibc's defaults.
"""
import functools
import json
import os.path as osp
import statistics
import tempfile
import time

import torch

from mmcot.analysis import (add_malloc_defaults_argument, device_name,
                            interleaved_times_ms, markdown_table,
                            reuse_freed_cpu_memory, speed_ratio)
from mmcot.analysis.classifiers import BACKBONES, build_classifier
from mmcot.cli import ToolArgumentParser, check_output_file
from mmcot.deployment import ClassScores, export_onnx, relative_error
from mmcot.fileio import atomic_write


def parse_args():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models',
                        nargs='+',
                        default=['ResNet-50', 'CoTNet-50'],
                        choices=list(BACKBONES),
                        metavar='MODEL')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--shape', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    add_malloc_defaults_argument(parser)
    parser.add_argument('--json', help='write the measurements here')
    args = parser.parse_args()
    check_output_file(parser, args.json, '--json')
    if min(args.batch, args.shape, args.repeats) < 1 or args.warmup < 0:
        parser.error('--batch, --shape and --repeats must be >= 1')
    if 'ResNet-50' not in args.models:
        args.models = ['ResNet-50'] + args.models  # the reference
    return args


def prepare(name, args, folder):
    """The runtimes of one model: name -> {batch: callable}, plus the
    compile / export times and the differences from eager."""
    import onnxruntime
    torch.manual_seed(0)
    model = ClassScores(build_classifier(name)).eval()
    inputs = {
        b: torch.randn(b, 3, args.shape, args.shape)
        for b in sorted({1, args.batch})
    }
    with torch.no_grad():
        eager_out = {b: model(x) for b, x in inputs.items()}
    info = dict(model=name)

    compiled = torch.compile(model)
    start = time.perf_counter()
    with torch.no_grad():
        compiled_out = {b: compiled(x) for b, x in inputs.items()}
    info['compile_s'] = time.perf_counter() - start
    info['compiled_vs_eager'] = max(
        relative_error(compiled_out[b], eager_out[b]) for b in inputs)

    path = osp.join(folder, f'{name}.onnx')
    start = time.perf_counter()
    export_onnx(model, (inputs[max(inputs)], ), path, dynamic_batch=True)
    info['onnx_export_s'] = time.perf_counter() - start
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(path,
                                           options,
                                           providers=['CPUExecutionProvider'])
    feed = session.get_inputs()[0].name
    info['onnx_vs_eager'] = max(
        relative_error(session.run(None, {feed: x.numpy()})[0], eager_out[b])
        for b, x in inputs.items())

    def no_grad(fn):

        def call(x):
            with torch.no_grad():
                fn(x)

        return call

    runtimes = {
        'eager': no_grad(model),
        'compiled': no_grad(compiled),
        'onnxruntime': lambda x: session.run(None, {feed: x.numpy()}),
    }
    return info, runtimes, inputs


def main():
    args = parse_args()
    reused = not args.malloc_defaults and reuse_freed_cpu_memory()
    with tempfile.TemporaryDirectory() as folder:
        prepared = [prepare(name, args, folder) for name in args.models]
        calls = {(info['model'], runtime, batch): functools.partial(call, x)
                 for info, runtimes, inputs in prepared
                 for runtime, call in runtimes.items()
                 for batch, x in inputs.items()}
        times = interleaved_times_ms(calls, 'cpu', args.warmup, args.repeats)
    rows = []
    for info, runtimes, _ in prepared:
        for runtime in runtimes:
            batch_times = times[(info['model'], runtime, args.batch)]
            reference = times[('ResNet-50', runtime, args.batch)]
            ratio, quartiles = speed_ratio(reference, batch_times)
            batch_ms = statistics.median(batch_times)
            rows.append({
                'model': info['model'],
                'runtime': runtime,
                'img_per_s': args.batch / batch_ms * 1e3,
                'latency_ms': statistics.median(
                    times[(info['model'], runtime, 1)]),
                'vs_ResNet-50': ratio,
                'vs_ResNet-50_iqr': quartiles
            })
    checks = [info for info, _, _ in prepared]
    setup = dict(device=device_name('cpu'),
                 torch=torch.__version__,
                 batch=args.batch,
                 shape=args.shape,
                 repeats=args.repeats,
                 warmup=args.warmup,
                 freed_memory_reused=reused)
    print(f'{setup["device"]}, torch {setup["torch"]}, fp32, '
          f'{args.shape}x{args.shape}: images/s at batch {args.batch}, '
          f'latency at batch 1; median of {args.repeats}')
    print(markdown_table(rows))
    print(
        markdown_table([{
            k: f'{v:.1e}' if k.endswith('_vs_eager') else v
            for k, v in info.items()
        } for info in checks]))
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump(dict(setup=setup, deployment=rows, checks=checks),
                      f,
                      indent=1)


if __name__ == '__main__':
    main()
