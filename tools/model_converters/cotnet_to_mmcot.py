"""Convert an official CoTNet checkpoint into an mmpretrain / mmcot one.

    python tools/model_converters/cotnet_to_mmcot.py SRC DST [--variant NAME]

    python tools/model_converters/cotnet_to_mmcot.py SRC DST --no-ema

SRC: an official ``.pth.tar`` / ``.pth`` (a state dict, or one under
``state_dict``, ``model`` or ``state_dict_ema``; ``module.`` prefixes are
removed). A training checkpoint holding both the weights (``state_dict``)
and their moving average (``state_dict_ema``) converts the average by
default: the official validation with EMA reports the average's accuracy,
the one the paper and the model zoo list; ``--no-ema`` takes the weights.
DST: a checkpoint with ``backbone.`` and ``head.fc.`` keys that
``mmpretrain.apis.init_model`` loads, and that mmdet backbones load through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
Any failure is one ``error: ...`` line; DST is then left as it was.
"""
import argparse
import os
import os.path as osp

import torch

from mmcot.cli import ToolArgumentParser
from mmcot.engine import CheckpointError, load_local_checkpoint
from mmcot.fileio import atomic_write
from mmcot.models.utils import (OFFICIAL_VARIANTS, convert_official_state_dict,
                                detect_variant, unwrap_state_dict)


def parse_args():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument(
        '--variant',
        choices=sorted(OFFICIAL_VARIANTS),
        help='official model name (detected from the keys by default)')
    parser.add_argument(
        '--ema',
        action=argparse.BooleanOptionalAction,
        help='convert state_dict_ema, the moving average of the weights '
        '(the default when the checkpoint has one), or with --no-ema '
        'state_dict, the weights themselves')
    return parser.parse_args()


def choose_weights(checkpoint, ema) -> tuple:
    """(state dict, whether it is the EMA one, what it is) of the part of
    ``checkpoint`` to convert."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f'it holds a {type(checkpoint).__name__}, not a '
                         'checkpoint dict')
    has_ema = isinstance(checkpoint.get('state_dict_ema'), dict)
    has_weights = any(
        isinstance(checkpoint.get(key), dict)
        for key in ('state_dict', 'model'))
    if ema and not has_ema:
        raise ValueError('--ema: it has no state_dict_ema')
    if ema is False and not has_weights and has_ema:
        raise ValueError('--no-ema: it holds state_dict_ema only')
    use_ema = has_ema if ema is None else ema
    if use_ema:
        what = ('state_dict_ema (the moving average of the weights, whose '
                'accuracy the official validation reports)')
        if has_weights:
            what += '; --no-ema converts state_dict'
    elif has_weights:
        what = 'state_dict (the weights)'
        if has_ema:
            what += '; without --no-ema state_dict_ema is converted'
    else:
        what = 'the state dict'
    return unwrap_state_dict(checkpoint, use_ema=use_ema), use_ema, what


def main():
    args = parse_args()
    # official training checkpoints also pickle their argparse namespace:
    # mmcot's loader builds it without running code from the file
    try:
        checkpoint = load_local_checkpoint(args.src, map_location='cpu')
    except (CheckpointError, OSError) as error:
        raise SystemExit(f'error: {error}')
    try:
        state_dict, ema, what = choose_weights(checkpoint, args.ema)
        variant = args.variant or detect_variant(state_dict)
    except (TypeError, ValueError) as error:
        raise SystemExit(f'error: {args.src} was not converted: {error}')
    try:
        converted = convert_official_state_dict(state_dict,
                                                OFFICIAL_VARIANTS[variant])
    except ValueError as error:
        raise SystemExit(f'error: {args.src} is not a {variant} checkpoint: '
                         f'{error}')
    try:
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        with atomic_write(args.dst) as f:
            torch.save(
                dict(
                    state_dict=converted,
                    meta=dict(source=osp.basename(args.src),
                              variant=variant,
                              ema=ema)), f)
    except OSError as error:
        raise SystemExit(f'error: cannot write {args.dst}: {error}')
    print(f'{variant}: converted {what}: {len(converted)} tensors -> '
          f'{args.dst}')


if __name__ == '__main__':
    main()
