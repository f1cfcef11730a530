"""Parameters and FLOPs (multiply-adds) of the model of a config.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--table]

FLOPs follow the paper's convention: one multiply-add counts once. MMEngine's
FlopAnalyzer counts convolutions, linear layers and norms; the CoT layers'
local aggregation is counted through mmcot's handle (K*K multiply-adds per
output element). Classification configs count the whole classifier
(backbone, neck, head); detection configs count the backbone.
"""
import argparse
import json

from mmengine.analysis.print_helper import complexity_stats_table
from mmengine.config import Config

from mmcot.analysis import model_complexity
from mmcot.fileio import atomic_write


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[224],
        help='input size: H W, or one value for a square')
    parser.add_argument(
        '--table', action='store_true', help='print a per-module table')
    parser.add_argument('--json', help='also write the numbers to this file')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H W or one size, got {args.shape}')
    return args


def main():
    args = parse_args()
    shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    result = model_complexity(Config.fromfile(args.config), shape)
    if args.table:
        print(complexity_stats_table(result['analyzer'], max_depth=2))
    print(f'{args.config}\n'
          f'  input: (3, {shape[0]}, {shape[1]}), counted: {result["counted"]}\n'
          f'  params: {result["params"] / 1e6:.2f} M\n'
          f'  FLOPs (multiply-adds): {result["flops"] / 1e9:.3f} G, of which '
          f'local aggregation {result["aggregation_flops"] / 1e9:.4f} G')
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump({k: v
                       for k, v in result.items() if k != 'analyzer'}, f)


if __name__ == '__main__':
    main()
