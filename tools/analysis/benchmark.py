"""Speed and memory of the CoT backbones beside ResNet-50, ResNeXt-50 and
ResNeSt-50, measured in the same run.

    python tools/analysis/benchmark.py [--device cpu|cuda] [--batch 8]
        [--shape 224] [--det-shape 800 1333] [--dtypes fp32 fp16 bf16]
        [--memory-format contiguous|channels_last] [--fuse-conv-bn]
        [--models MODEL ...] [--malloc-defaults] [--profile N]
        [--json OUT] [--markdown OUT]

Each model is an ImageNet classifier (backbone, global pooling, 1000-way
linear head). Per model and precision: inference throughput (images/s,
no_grad, eval mode), training step time (forward, cross-entropy, backward,
SGD step), the backbone's inference time on one image of detection size
(``--det-shape``, eval mode; ``--det-shape 0 0`` skips it) and the peak
memory of a training step. Times are medians of ``--repeats`` after
``--warmup``, the models timed in turns (one call of each per round), so
that the ratio columns, each model's throughput over ResNet-50's, compare
models under the same conditions; each comes with the first and third
quartiles of the ratios of the single rounds (``*_iqr``), so that a
difference within the machine's noise reads as one. fp16/bf16 run under
``torch.autocast`` (GPU only). ``--memory-format channels_last`` runs
every model and input in channels-last memory; ``--fuse-conv-bn`` folds
each batch norm that follows a conv into that conv for the inference
timings (``mmcv.cnn.fuse_conv_bn``, as mmdet's benchmark does). On a CPU,
the peak memory is measured for each model in a fresh forked process,
and the timed calls then run with malloc keeping the memory a call frees
for the next (:func:`mmcot.analysis.reuse_freed_cpu_memory`), as
benchmark_op.py's: with glibc's defaults a forward at batch 8 takes 40 000
to 70 000 first-touch page faults on its outputs, which cost both models
about a quarter of their time and vary by process. ``--malloc-defaults``
times with glibc's defaults instead. ``--profile N`` adds where each
model's inference time goes: the N operators of the largest self time
(GPU: kernels of the largest device time) in three inference calls after
the warm-up, each with its share of the total (``profiles`` in the JSON).
"""
import copy
import json
import os.path as osp
import statistics

import torch
import torch.nn.functional as F
from mmcv.cnn import fuse_conv_bn

import mmcot  # noqa: F401  (registers the CoT backbones)
from mmcot.analysis import (add_malloc_defaults_argument, device_name,
                            interleaved_times_ms, isolated_on_cpu,
                            markdown_table, peak_memory_mib,
                            reuse_freed_cpu_memory, self_time_shares,
                            speed_ratio)
from mmcot.analysis.classifiers import BACKBONES, build_classifier
from mmcot.cli import ToolArgumentParser, check_device, check_output_file
from mmcot.fileio import atomic_write

DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
MEMORY_FORMATS = {
    'contiguous': torch.contiguous_format,
    'channels_last': torch.channels_last
}
REFERENCE = 'ResNet-50'
#: inference calls the profile of ``--profile`` covers
PROFILED_CALLS = 3


def parse_args():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(BACKBONES),
        choices=list(BACKBONES),
        metavar='MODEL',
        help=f'models to measure (default: all): {", ".join(BACKBONES)}')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtypes',
        nargs='+',
        choices=list(DTYPES),
        help='precisions (default: fp32 on a CPU, all three on a GPU)')
    parser.add_argument(
        '--memory-format',
        default='contiguous',
        choices=list(MEMORY_FORMATS),
        help='of every model and input (default: contiguous)')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold batch norms into convs for the inference timings')
    add_malloc_defaults_argument(parser)
    parser.add_argument('--batch', type=int, default=8, help='inference')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--shape', type=int, default=224)
    parser.add_argument(
        '--det-shape',
        type=int,
        nargs=2,
        default=[800, 1333],
        metavar=('H', 'W'),
        help='backbone inference at this size, batch 1 (0 0: skip)')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='also list the N operators taking most of each model\'s '
        'inference time (default: 0, none)')
    parser.add_argument('--json', help='write the measurements here')
    parser.add_argument('--markdown', help='write the table here')
    args = parser.parse_args()
    check_device(parser, args.device)
    check_output_file(parser, args.json, '--json')
    check_output_file(parser, args.markdown, '--markdown')
    gpu = args.device.startswith('cuda')
    args.reuse_freed_memory = not (gpu or args.malloc_defaults)
    args.dtypes = args.dtypes or (list(DTYPES) if gpu else ['fp32'])
    if not gpu and args.dtypes != ['fp32']:
        parser.error('fp16 / bf16 autocast is measured on GPUs only')
    for name in ('batch', 'train_batch', 'shape', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    for name in ('warmup', 'profile'):
        if getattr(args, name) < 0:
            parser.error(f'--{name} must be at least 0')
    if args.train_batch * (args.shape // 32)**2 < 2:
        parser.error('--train-batch x (--shape / 32)^2 must be at least 2: '
                     'batch norm needs more than one value a channel in the '
                     'last stage to train')
    if any(size < 0 for size in args.det_shape):
        parser.error('--det-shape takes two sizes >= 0 (0 0: skip)')
    if not all(args.det_shape):
        args.det_shape = None  # no backbone timing at detection size
    if REFERENCE not in args.models:
        args.models = [REFERENCE] + args.models  # the reference
    return args


class ModelRunner:
    """One model at one precision, with the calls the benchmark times."""

    def __init__(self, name: str, args, dtype_name: str) -> None:
        torch.manual_seed(0)
        self.device = device = args.device
        self.dtype = DTYPES[dtype_name]
        memory_format = MEMORY_FORMATS[args.memory_format]
        self.model = build_classifier(name).to(
            device, memory_format=memory_format)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.eval_model = (
            fuse_conv_bn(copy.deepcopy(self.model).eval())
            if args.fuse_conv_bn else self.model)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=1e-3, momentum=0.9)
        self.images = torch.randn(
            args.batch, 3, args.shape, args.shape,
            device=device).contiguous(memory_format=memory_format)
        self.batch = torch.randn(
            args.train_batch, 3, args.shape, args.shape,
            device=device).contiguous(memory_format=memory_format)
        self.labels = torch.randint(
            0, 1000, (args.train_batch, ), device=device)
        self.det_image = (
            torch.randn(1, 3, *args.det_shape, device=device).contiguous(
                memory_format=memory_format) if args.det_shape else None)

    def autocast(self):
        return torch.autocast(
            self.device.split(':')[0],
            dtype=self.dtype,
            enabled=self.dtype is not None)

    def infer(self) -> None:
        self.eval_model.eval()
        with torch.no_grad(), self.autocast():
            self.eval_model(self.images, mode='tensor')

    def infer_backbone(self) -> None:
        self.eval_model.eval()
        with torch.no_grad(), self.autocast():
            self.eval_model.backbone(self.det_image)

    def train_step(self) -> None:
        self.model.train()
        with self.autocast():
            loss = F.cross_entropy(
                self.model(self.batch, mode='tensor'), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure_memory(name: str, args, dtype_name: str) -> dict:
    """Parameters and the peak memory of one training step."""
    runner = ModelRunner(name, args, dtype_name)
    if args.device.startswith('cuda'):
        runner.train_step()  # optimizer state and caches allocated first
    peak = peak_memory_mib(runner.train_step, args.device)
    return dict(params_M=runner.params / 1e6, train_peak_MiB=peak)


def measure_speed(args, dtype_name: str) -> dict:
    """Every model's inference, training and detection-size times, in
    turns: {model: {'infer': [ms, ...], 'train': [...][, 'det': [...]]}},
    one time per round."""
    runners = {name: ModelRunner(name, args, dtype_name)
               for name in args.models}
    calls = dict(infer=lambda r: r.infer, train=lambda r: r.train_step)
    if args.det_shape:
        calls['det'] = lambda r: r.infer_backbone
    times = {name: {} for name in runners}
    for call, method in calls.items():
        rounds = interleaved_times_ms(
            {name: method(runner)
             for name, runner in runners.items()}, args.device, args.warmup,
            args.repeats)
        for name, ms in rounds.items():
            times[name][call] = ms
    return times


def measure_profiles(args, dtype_name: str) -> dict:
    """{model: the ``args.profile`` operators of the largest self time in
    its inference (:func:`mmcot.analysis.self_time_shares`)}."""
    profiles = {}
    for name in args.models:
        runner = ModelRunner(name, args, dtype_name)
        for _ in range(max(args.warmup, 1)):
            runner.infer()
        profiles[name] = self_time_shares(runner.infer, args.device,
                                          args.profile, PROFILED_CALLS)
    return profiles


def profile_table(profiles: dict) -> str:
    return markdown_table([
        dict(model=name, op=entry['op'], self_ms=f'{entry["self_ms"]:.3f}',
             share=f'{entry["share"]:.1%}')
        for name, entries in profiles.items() for entry in entries
    ])


def measure(args, dtype_name: str) -> list:
    """The table rows of one precision. Each ratio to ResNet-50 (its
    throughput over ResNet-50's, from the medians) comes with the first and
    third quartiles of the per-round ratios (``..._iqr``)."""
    memory = {}
    for name in args.models:  # forks before this process runs any threads
        memory[name] = isolated_on_cpu(args.device, measure_memory, name,
                                       args, dtype_name)
    if args.reuse_freed_memory:  # after the peak resident sets above
        args.reuse_freed_memory = reuse_freed_cpu_memory()  # glibc only
    rounds = measure_speed(args, dtype_name)
    reference = rounds[REFERENCE]
    rows = []
    for name in args.models:
        t = {call: statistics.median(ms) for call, ms in rounds[name].items()}
        ratios = {}
        for call, key in (('infer', 'vs_ResNet-50'),
                          ('train', 'train_vs_ResNet-50'),
                          ('det', 'det_vs_ResNet-50')):
            if call in t:
                ratios[key], ratios[f'{key}_iqr'] = speed_ratio(
                    reference[call], rounds[name][call])
        row = dict(
            model=name,
            precision=dtype_name,
            params_M=memory[name]['params_M'],
            infer_img_per_s=args.batch / t['infer'] * 1e3,
            train_step_ms=t['train'],
            train_peak_MiB=memory[name]['train_peak_MiB'])
        if 'det' in t:
            row['det_backbone_ms'] = t['det']
        row.update(ratios)
        rows.append(row)
        q1, q3 = row['vs_ResNet-50_iqr']
        print(f'{name} {dtype_name}: {row["infer_img_per_s"]:.1f} img/s, '
              f'{row["vs_ResNet-50"]:.2f}x ResNet-50 (rounds: '
              f'{q1:.2f}-{q3:.2f})')
    return rows


def main():
    args = parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda: no GPU is visible')
    rows = []
    profiles = {}
    for dtype_name in args.dtypes:
        rows += measure(args, dtype_name)
        if args.profile:
            profiles[dtype_name] = measure_profiles(args, dtype_name)

    setup = dict(
        device=device_name(args.device),
        torch=torch.__version__,
        batch=args.batch,
        train_batch=args.train_batch,
        shape=args.shape,
        det_shape=args.det_shape,
        memory_format=args.memory_format,
        fuse_conv_bn=args.fuse_conv_bn,
        freed_memory_reused=args.reuse_freed_memory,
        repeats=args.repeats,
        warmup=args.warmup,
        interleaved=True)
    title = (f'{setup["device"]}, torch {setup["torch"]}, inference batch '
             f'{args.batch}, training batch {args.train_batch}, '
             f'{args.shape}x{args.shape}, {args.memory_format}'
             + (', batch norms fused into convs for inference'
                if args.fuse_conv_bn else '')
             + (f', backbone at {args.det_shape[0]}x{args.det_shape[1]} '
                'batch 1' if setup['det_shape'] else '') +
             f', median of {args.repeats}, models in turns')
    table = markdown_table(rows)
    print(title)
    print(table)
    for dtype_name, by_model in profiles.items():
        measure_of = ('kernel device time' if args.device.startswith('cuda')
                      else 'operator self time')
        print(f'\nwhere inference time goes, {dtype_name} ({measure_of} '
              f'over {PROFILED_CALLS} calls)')
        print(profile_table(by_model))
    if args.json:
        results = dict(setup=setup, rows=rows)
        if profiles:
            results['profiles'] = profiles
        with atomic_write(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        with atomic_write(args.markdown, 'w') as f:
            f.write(f'{title}\n\n{table}\n')
        print(f'written to {osp.abspath(args.markdown)}')


if __name__ == '__main__':
    main()
