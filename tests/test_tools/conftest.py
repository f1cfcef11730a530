"""The demos the tool tests share: their configs, the --cfg-options of a
short deterministic run, and one trained run of each (session-wide)."""
import json
import os
import os.path as osp

import pytest

from ..conftest import run_tool

DEMO = 'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py'
MASK_DEMO = ('configs/mask_rcnn/'
             'mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py')
FASTER_DEMO = ('configs/faster_rcnn/'
               'faster-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py')


def demo_options(data_root, epochs=2, **extra):
    """--cfg-options for a short, deterministic demo run on ``data_root``."""
    options = {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_dataloader.batch_size': 8,
        'train_dataloader.num_workers': 0,
        'val_dataloader.num_workers': 0,
        'test_dataloader.num_workers': 0,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': 5,
        'default_hooks.logger.interval': 1,
        'randomness.deterministic': True,
    }
    options.update(extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def det_options(data_root, epochs=1, **extra):
    root = data_root.rstrip('/') + '/'
    options = {
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
        'val_evaluator.ann_file': root + 'annotations/instances_val.json',
        'test_evaluator.ann_file': root + 'annotations/instances_val.json',
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0,
        'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.logger.interval': 1,
    }
    options.update(extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def scalars(work_dir):
    """The JSON lines MMEngine's LocalVisBackend logged for a run."""
    [run] = [d for d in sorted(os.listdir(work_dir))
             if osp.isdir(osp.join(work_dir, d)) and d[:1].isdigit()]
    path = osp.join(work_dir, run, 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='session')
def trained(shapes_cls, tmp_path_factory):
    """Two epochs of the demo: its work dir."""
    work_dir = str(tmp_path_factory.mktemp('demo'))
    run_tool('tools/train.py', DEMO, '--work-dir', work_dir,
             *demo_options(shapes_cls))
    return work_dir


@pytest.fixture(scope='session')
def mask_run(shapes_coco, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('mask_demo'))
    result = run_tool('tools/train.py', MASK_DEMO, '--work-dir', work_dir,
                      *det_options(shapes_coco))
    return work_dir, result.stdout + result.stderr
