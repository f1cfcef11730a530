"""Speed and memory of the CoT backbones beside ResNet-50, ResNeXt-50 and
ResNeSt-50, measured in the same run.

    python tools/analysis/benchmark.py [--device cpu|cuda] [--batch 8]
        [--shape 224] [--dtypes fp32 fp16 bf16] [--json OUT] [--markdown OUT]

Each model is an ImageNet classifier (backbone, global pooling, 1000-way
linear head). Per model and precision: inference throughput (images/s,
no_grad, eval mode), training step time (forward, cross-entropy, backward,
SGD step) and peak memory of a training step; medians of ``--repeats``
after ``--warmup``. fp16/bf16 run under ``torch.autocast`` (GPU only). The
ratio column divides each throughput by ResNet-50's from the same run. On a
CPU every model runs in a fresh forked process, for a clean peak memory.
"""
import argparse
import json
import os.path as osp

import torch
import torch.nn.functional as F

import mmcot  # noqa: F401  (registers the CoT backbones)
from mmcot.analysis import (device_name, markdown_table, median_ms,
                            peak_memory_mib, run_isolated)
from mmcot.analysis.classifiers import BACKBONES, build_classifier
from mmcot.fileio import atomic_write

DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument('--batch', type=int, default=8, help='inference')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--shape', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--json', help='write the measurements here')
    parser.add_argument('--markdown', help='write the table here')
    args = parser.parse_args()
    gpu = args.device.startswith('cuda')
    args.dtypes = args.dtypes or (list(DTYPES) if gpu else ['fp32'])
    if not gpu and args.dtypes != ['fp32']:
        parser.error('fp16 / bf16 autocast is measured on GPUs only')
    if 'ResNet-50' not in args.models:
        args.models = ['ResNet-50'] + args.models  # the reference
    return args


def measure_model(name: str, args, dtype_name: str) -> dict:
    """One model at one precision: throughput, step time, peak memory."""
    torch.manual_seed(0)
    device = args.device
    model = build_classifier(name).to(device)
    params = sum(p.numel() for p in model.parameters())
    dtype = DTYPES[dtype_name]

    def autocast():
        return torch.autocast(
            device.split(':')[0], dtype=dtype, enabled=dtype is not None)

    images = torch.randn(args.batch, 3, args.shape, args.shape, device=device)
    model.eval()

    def infer():
        with torch.no_grad(), autocast():
            model(images, mode='tensor')

    infer_ms = median_ms(infer, device, args.warmup, args.repeats)

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = torch.randn(
        args.train_batch, 3, args.shape, args.shape, device=device)
    labels = torch.randint(0, 1000, (args.train_batch, ), device=device)

    def train_step():
        with autocast():
            loss = F.cross_entropy(model(batch, mode='tensor'), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.startswith('cuda'):
        train_step()
    peak = peak_memory_mib(train_step, device)
    step_ms = median_ms(train_step, device, args.warmup, args.repeats)
    return dict(
        model=name,
        precision=dtype_name,
        params_M=params / 1e6,
        infer_img_per_s=args.batch / infer_ms * 1e3,
        train_step_ms=step_ms,
        train_peak_MiB=peak)


def main():
    args = parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no GPU is visible')
    rows = []
    for dtype_name in args.dtypes:
        for name in args.models:
            if args.device.startswith('cuda'):
                row = measure_model(name, args, dtype_name)
            else:
                row = run_isolated(measure_model, name, args, dtype_name)
            rows.append(row)
            print(f'{name} {dtype_name}: {row["infer_img_per_s"]:.1f} img/s')
    for row in rows:
        reference = next(r for r in rows if r['model'] == 'ResNet-50'
                         and r['precision'] == row['precision'])
        row['vs_ResNet-50'] = (row['infer_img_per_s'] /
                               reference['infer_img_per_s'])

    setup = dict(
        device=device_name(args.device),
        torch=torch.__version__,
        batch=args.batch,
        train_batch=args.train_batch,
        shape=args.shape,
        repeats=args.repeats,
        warmup=args.warmup)
    title = (f'{setup["device"]}, torch {setup["torch"]}, inference batch '
             f'{args.batch}, training batch {args.train_batch}, '
             f'{args.shape}x{args.shape}, median of {args.repeats}')
    table = markdown_table(rows)
    print(title)
    print(table)
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump(dict(setup=setup, rows=rows), f, indent=1)
    if args.markdown:
        with atomic_write(args.markdown, 'w') as f:
            f.write(f'{title}\n\n{table}\n')
        print(f'written to {osp.abspath(args.markdown)}')


if __name__ == '__main__':
    main()
