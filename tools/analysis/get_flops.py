"""Parameters and FLOPs (multiply-adds) of the model of a config.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--json OUT]

FLOPs follow the paper's convention: one multiply-add counts once. MMEngine's
FlopAnalyzer counts convolutions, linear layers and norms; the CoT layers'
local aggregation is counted through mmcot's handle (K*K multiply-adds per
output element). Classification configs count the whole classifier
(backbone, neck, head); detection configs count the backbone.
"""
import argparse
import json

import torch
from mmengine.analysis import parameter_count
from mmengine.analysis.print_helper import complexity_stats_table
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmcot.analysis import cot_flop_analyzer


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


class _Classifier(torch.nn.Module):
    """An mmpretrain classifier as a plain images -> logits module."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images, mode='tensor')


def complexity(cfg: Config, shape) -> dict:
    """Params and FLOPs of the config's model for one (3, H, W) image."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    model.eval()
    if cfg.get('default_scope') == 'mmdet':
        counted, what = model.backbone, 'backbone'
    else:
        counted, what = _Classifier(model), 'classifier'
    image = torch.randn(1, 3, *shape)
    analyzer = cot_flop_analyzer(counted, (image, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_operator = analyzer.by_operator()
    return dict(
        counted=what,
        shape=list(shape),
        params=parameter_count(counted)[''],
        flops=analyzer.total(),
        aggregation_flops=sum(v for k, v in by_operator.items()
                              if 'LocalAggregation' in k),
        table=complexity_stats_table(analyzer, max_depth=2))


def main():
    args = parse_args()
    shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    cfg = Config.fromfile(args.config)
    result = complexity(cfg, shape)
    if args.table:
        print(result['table'])
    print(f'{args.config}\n'
          f'  input: (3, {shape[0]}, {shape[1]}), counted: {result["counted"]}\n'
          f'  params: {result["params"] / 1e6:.2f} M\n'
          f'  FLOPs (multiply-adds): {result["flops"] / 1e9:.3f} G, of which '
          f'local aggregation {result["aggregation_flops"] / 1e9:.4f} G')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({k: v for k, v in result.items() if k != 'table'}, f)


if __name__ == '__main__':
    main()
