"""Time the compiled local aggregation op against its PyTorch reference.

Shapes are the four CoTNet-50 stages (K=3, stride 1, padding 1, G=C/8):
forward and forward+backward, median of repeats after warm-up, and peak
memory (CUDA: the allocator's peak; CPU: the growth of the peak resident
set, each case in a fresh forked process). On a GPU it also reports the
achieved bandwidth against the device's copy bandwidth.

Example:
    python tools/analysis/benchmark_op.py --batch 8 --repeats 10
"""
import argparse
import json

import torch

from mmcot.analysis import (device_name, markdown_table, median_ms,
                            peak_memory_mib, run_isolated)
from mmcot.fileio import atomic_write
from mmcot.ops import ext_available, local_aggregation_reference
from mmcot.ops.local_aggregation import LocalAggregationFunction

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))
KERNEL, STRIDE, PADDING, DILATION = (3, 3), (1, 1), (1, 1), (1, 1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtype',
        default='float32',
        choices=['float32', 'float64', 'float16', 'bfloat16'])
    parser.add_argument('--json', help='also write the rows to this file')
    return parser.parse_args()


def compiled(x, w):
    return LocalAggregationFunction.apply(x, w, KERNEL, STRIDE, PADDING,
                                          DILATION)


def reference(x, w):
    return local_aggregation_reference(x, w, KERNEL, STRIDE, PADDING,
                                       DILATION)


IMPLS = {'compiled': compiled, 'reference': reference}


def run_case(impl, shape, args, with_backward):
    """Median time (ms) and peak extra memory (MiB) of one case."""
    channels, size = shape
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    x = torch.randn(args.batch, channels, size, size, generator=g)
    w = torch.randn(args.batch, 1, channels // 8, 9, size, size, generator=g)
    x = x.to(args.device, dtype).requires_grad_()
    w = w.to(args.device, dtype).requires_grad_()
    grad = torch.ones_like(x)

    def step():
        y = IMPLS[impl](x, w)
        if with_backward:
            torch.autograd.grad(y, (x, w), grad)

    if args.device.startswith('cuda'):
        step()  # CUDA context and kernel loading are not the op's memory
    mib = peak_memory_mib(step, args.device)
    ms = median_ms(step, args.device, args.warmup, args.repeats)
    return ms, mib


def measure(impl, shape, args, with_backward):
    if args.device.startswith('cuda'):
        return run_case(impl, shape, args, with_backward)
    return run_isolated(run_case, impl, shape, args, with_backward)


def copy_bandwidth(device):
    """Device copy bandwidth (GB/s): read + write of a 1 GiB clone."""
    src = torch.empty(2**28, device=device)
    ms = median_ms(lambda: src.clone(), device, 3, 10)
    return 2 * src.numel() * 4 / ms / 1e6


def main():
    args = parse_args()
    if not ext_available():
        raise SystemExit('mmcot._ext is not built: nothing to compare')
    itemsize = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()
    gpu = args.device.startswith('cuda')
    peak_bw = copy_bandwidth(args.device) if gpu else None
    rows = []
    for shape in STAGES:
        row = dict(C=shape[0], H=shape[1])
        for mode, backward in (('fwd', False), ('fwd+bwd', True)):
            for impl in IMPLS:
                ms, mib = measure(impl, shape, args, backward)
                row[f'{impl} {mode} ms'] = ms
                row[f'{impl} {mode} MiB'] = mib
            row[f'speed-up {mode}'] = (row[f'reference {mode} ms'] /
                                       row[f'compiled {mode} ms'])
        if gpu:  # forward moves V, A and Y once
            c, h = shape
            moved = args.batch * h * h * (2 * c + 9 * c // 8) * itemsize
            row['fwd GB/s'] = moved / row['compiled fwd ms'] / 1e6
            row['of copy'] = row['fwd GB/s'] / peak_bw
        rows.append(row)

    print(f'local_aggregation, batch {args.batch}, {args.dtype}, '
          f'{device_name(args.device)}; median of {args.repeats} after '
          f'{args.warmup} warm-up; memory: peak extra over the inputs')
    if gpu:
        print(f'device copy bandwidth: {peak_bw:.0f} GB/s')
    print(markdown_table(rows))
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump(
                dict(
                    device=device_name(args.device),
                    dtype=args.dtype,
                    batch=args.batch,
                    rows=rows),
                f,
                indent=1)


if __name__ == '__main__':
    main()
