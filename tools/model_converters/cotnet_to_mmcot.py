"""Convert an official CoTNet checkpoint into an mmpretrain / mmcot one.

    python tools/model_converters/cotnet_to_mmcot.py SRC DST [--variant NAME]

SRC: an official ``.pth.tar`` / ``.pth`` (a state dict, or one under
``state_dict_ema``, ``state_dict`` or ``model``; ``module.`` prefixes are
removed). DST: a checkpoint with ``backbone.`` and ``head.fc.`` keys that
``mmpretrain.apis.init_model`` loads, and that mmdet backbones load through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse
import os
import os.path as osp

import torch

from mmcot.engine import CheckpointError, load_local_checkpoint
from mmcot.fileio import atomic_write
from mmcot.models.utils import (OFFICIAL_VARIANTS, convert_official_state_dict,
                                detect_variant, unwrap_state_dict)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument(
        '--variant',
        choices=sorted(OFFICIAL_VARIANTS),
        help='official model name (detected from the keys by default)')
    parser.add_argument(
        '--ema',
        action='store_true',
        help='convert the state_dict_ema weights (the paper\'s EMA rows)')
    return parser.parse_args()


def main():
    args = parse_args()
    # official training checkpoints also pickle their argparse namespace:
    # mmcot's loader builds it without running code from the file
    try:
        checkpoint = load_local_checkpoint(args.src, map_location='cpu')
    except (CheckpointError, OSError) as error:
        raise SystemExit(f'error: {error}')
    state_dict = unwrap_state_dict(checkpoint, use_ema=args.ema)
    variant = args.variant or detect_variant(state_dict)
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
                              variant=variant)), f)
    except OSError as error:
        raise SystemExit(f'error: cannot write {args.dst}: {error}')
    print(f'{variant}: {len(converted)} tensors -> {args.dst}')


if __name__ == '__main__':
    main()
