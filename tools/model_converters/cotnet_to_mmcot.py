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
import pickle

import torch

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
    if not osp.isfile(args.src):
        raise SystemExit(f'error: no such checkpoint: {args.src}')
    # official training checkpoints also pickle their argparse namespace
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            checkpoint = torch.load(
                args.src, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as error:
            raise SystemExit(
                f'error: {args.src} holds objects other than tensors, so it '
                'was not unpickled (weights_only=True). If you trust it, save '
                'its state dict alone with torch.save and convert that. '
                f'Details: {error}')
    state_dict = unwrap_state_dict(checkpoint, use_ema=args.ema)
    variant = args.variant or detect_variant(state_dict)
    try:
        converted = convert_official_state_dict(state_dict,
                                                OFFICIAL_VARIANTS[variant])
    except ValueError as error:
        raise SystemExit(f'error: {args.src} is not a {variant} checkpoint: '
                         f'{error}')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.tmp'
    torch.save(
        dict(state_dict=converted, meta=dict(source=osp.basename(args.src),
                                             variant=variant)), tmp)
    os.replace(tmp, args.dst)  # never leave a half-written DST
    print(f'{variant}: {len(converted)} tensors -> {args.dst}')


if __name__ == '__main__':
    main()
