"""Export an mmcot model to ONNX (standard operators only).

    python tools/deployment/pytorch2onnx.py CONFIG --checkpoint CKPT
        --out FILE.onnx [--shape H W] [--dynamic-batch] [--verify]
        [--backbone-only]

Classification configs: the input is the normalised image batch (what the
data preprocessor hands the model), the output the class scores
``model(x, mode='tensor')`` returns. Detection configs with
``--backbone-only``: the backbone, whose outputs are its feature maps. The
local aggregation becomes pad / slice / multiply / add, so the file runs in
onnxruntime (or TensorRT, OpenVINO, ...) without mmcot. ``--verify`` runs
it in onnxruntime on a random batch (and, with ``--dynamic-batch``, on a
batch of another size) and fails if it differs from PyTorch by more than
1e-4 relative to the largest output.
"""
import os.path as osp

import torch
from mmengine.config import Config

from mmcot.cli import CfgOptionsAction, ToolArgumentParser, check_output_file
from mmcot.deployment import ClassScores, ExportError, export_onnx, verify_onnx
from mmcot.engine import (check_checkpoint_matches, exit_on_file_errors,
                          load_config)

TOLERANCE = 1e-4


def parse_args():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='an mmcot config file')
    parser.add_argument('--checkpoint',
                        help='weights to export (default: random weights)')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--shape',
                        type=int,
                        nargs=2,
                        default=[224, 224],
                        metavar=('H', 'W'),
                        help='input height and width (default: 224 224)')
    parser.add_argument(
        '--batch',
        type=int,
        default=1,
        help='batch size of the file (the example with --dynamic-batch)')
    parser.add_argument('--dynamic-batch',
                        action='store_true',
                        help='let the batch size vary in the ONNX file')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare onnxruntime with PyTorch on random inputs')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='export the backbone (feature maps) of the config\'s model')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=CfgOptionsAction,
                        help='override config settings, key=value pairs')
    args = parser.parse_args()
    if min(args.shape) < 1 or args.batch < 1:
        parser.error('--shape and --batch must be positive')
    check_output_file(parser, args.out, '--out')
    return args


def build_model(cfg: Config) -> torch.nn.Module:
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).eval()


def main():
    args = parse_args()
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if scope == 'mmdet' and not args.backbone_only:
        raise SystemExit(
            f'error: {args.config} is a detector: a whole detector (its '
            'post-processing) is not exported here; export its backbone with '
            '--backbone-only, or use mmdeploy')
    model = build_model(cfg)
    if args.checkpoint:
        from mmengine.runner import load_checkpoint
        try:
            check_checkpoint_matches(model, args.checkpoint)
        except ValueError as error:
            raise SystemExit(f'error: {error}')
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    else:
        print('no --checkpoint: exporting random weights')
    if args.backbone_only:
        if not isinstance(getattr(model, 'backbone', None), torch.nn.Module):
            raise SystemExit(f'error: the model of {args.config} has no '
                             'backbone to export')
        module, outputs = model.backbone, None
    elif scope == 'mmpretrain':
        module, outputs = ClassScores(model), ['scores']
    else:
        raise SystemExit(f'error: {args.config} has default_scope {scope!r}; '
                         'mmpretrain (classification) or mmdet with '
                         '--backbone-only are exported')
    module.eval()
    # torch.export fixes a dimension it sees at size 1
    batch = max(args.batch, 2) if args.dynamic_batch else args.batch
    example = torch.randn(batch, 3, *args.shape)
    try:
        export_onnx(module, (example, ),
                    args.out,
                    dynamic_batch=args.dynamic_batch,
                    input_names=['images'],
                    output_names=outputs)
    except ExportError as error:
        raise SystemExit(f'error: {error}')
    print(f'{args.config} -> {osp.abspath(args.out)} '
          f'({osp.getsize(args.out) / 2**20:.1f} MiB)')
    if args.verify:
        batches = sorted({args.batch, 1, args.batch +
                          3} if args.dynamic_batch else {args.batch})
        for batch in batches:
            images = torch.randn(batch, 3, *args.shape)
            error = verify_onnx(args.out, module, (images, ))
            print(f'onnxruntime vs PyTorch, batch {batch}: max relative '
                  f'error {error:.2e}')
            if not error <= TOLERANCE:
                raise SystemExit(f'error: {args.out} differs from PyTorch by '
                                 f'{error:.2e} > {TOLERANCE:.0e}')


if __name__ == '__main__':
    exit_on_file_errors(main)
