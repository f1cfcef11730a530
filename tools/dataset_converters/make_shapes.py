"""Generate mmcot's embedded demo datasets (deterministic, no download).

    python tools/dataset_converters/make_shapes.py cls data/shapes_cls
    python tools/dataset_converters/make_shapes.py det data/shapes_coco
    python tools/dataset_converters/make_shapes.py seg data/shapes_seg

``cls``: mmpretrain folder format (``train/<class>/*.png``, ``val/...``);
``det``: COCO instance segmentation (``train/``, ``val/``,
``annotations/instances_{train,val}.json``); ``seg``: mmseg's semantic
segmentation layout (``img_dir/{train,val}/``, ``ann_dir/{train,val}/``).
"""
import os.path as osp

from mmcot.cli import ToolArgumentParser
from mmcot.datasets import (make_shapes_classification, make_shapes_detection,
                            make_shapes_segmentation)
from mmcot.engine import exit_on_file_errors


def main():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task', choices=['cls', 'det', 'seg'])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if osp.exists(args.out) and not osp.isdir(args.out):
        parser.error(f'out {args.out} is a file, not a folder')
    make = dict(
        cls=make_shapes_classification,
        det=make_shapes_detection,
        seg=make_shapes_segmentation)[args.task]
    make(args.out, seed=args.seed)
    print(f'shapes {args.task} dataset written to {osp.abspath(args.out)}')


if __name__ == '__main__':
    exit_on_file_errors(main)
