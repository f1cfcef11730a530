"""Parameters and FLOPs (multiply-adds) of the model of a config.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--table]

FLOPs follow the paper's convention: one multiply-add counts once. MMEngine's
FlopAnalyzer counts convolutions, linear layers and norms; the CoT layers'
local aggregation is counted through mmcot's handle (K*K multiply-adds per
output element). Classification configs count the whole classifier
(backbone, neck, head) on an image of their test crop size (224, or 256 and
320 for SE-CoTNetD-152); detection configs count the whole
detector at inference on a 1280x800 (W x H) image: backbone, neck, RPN, the
box heads on the proposals the RPN keeps and the mask heads on the
detections (test_cfg.rpn.max_per_img and test_cfg.rcnn.max_per_img);
segmentation configs count the segmentor at inference (backbone and decode
head; the params include the training-only auxiliary head) on a 512x512
image.
"""
import json
import os.path as osp

from mmengine.analysis.print_helper import complexity_stats_table

from mmcot.analysis import default_input_shape, model_complexity
from mmcot.cli import ToolArgumentParser, check_output_file
from mmcot.engine import exit_on_file_errors, load_config
from mmcot.fileio import atomic_write


def parse_args():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input size: H W, or one value for a square (default: the '
        'test crop of a classification config, 800 1280 for detection, '
        '512 512 for segmentation)')
    parser.add_argument(
        '--table', action='store_true', help='print a per-module table')
    parser.add_argument('--json', help='also write the numbers to this file')
    args = parser.parse_args()
    if args.shape is not None and (len(args.shape) not in (1, 2)
                                   or min(args.shape) < 32):
        parser.error(f'--shape takes H W or one size, each at least 32, got '
                     f'{args.shape}')
    if not osp.isfile(args.config):
        parser.exit(2, f'error: config {args.config} does not exist\n')
    check_output_file(parser, args.json, '--json')
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config)
    if args.shape is None:
        shape = default_input_shape(cfg)
    else:
        shape = tuple(args.shape * 2 if len(args.shape) == 1 else args.shape)
    result = model_complexity(cfg, shape)
    if args.table:
        print(complexity_stats_table(result['analyzer'], max_depth=2))
    proposals = ('' if result['proposals'] is None else
                 f', box heads on {result["proposals"]} proposals')
    if result['mask_rois'] is not None:
        proposals += f', mask heads on {result["mask_rois"]} detections'
    print(f'{args.config}\n'
          f'  input: (3, {shape[0]}, {shape[1]}), counted: '
          f'{result["counted"]}{proposals}\n'
          f'  params: {result["params"] / 1e6:.2f} M\n'
          f'  FLOPs (multiply-adds): {result["flops"] / 1e9:.3f} G, of which '
          f'local aggregation {result["aggregation_flops"] / 1e9:.4f} G')
    if args.json:
        with atomic_write(args.json, 'w') as f:
            json.dump({k: v
                       for k, v in result.items() if k != 'analyzer'}, f)


if __name__ == '__main__':
    exit_on_file_errors(main)
