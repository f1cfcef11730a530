"""mmpretrain's and mmdet's own tools on mmcot's demo configs, through
``mim test`` and ``mim run`` (the README lists them as working)."""
import glob
import json
import os
import os.path as osp
import pickle
import re

import pytest

from ..conftest import MIM, needs_mim, run_tool
from .conftest import DEMO, MASK_DEMO, demo_options, det_options, scalars

pytestmark = needs_mim


def last_val_accuracy(work_dir):
    return [r['accuracy/top1'] for r in scalars(work_dir)
            if 'accuracy/top1' in r][-1]


def test_mim_test_mmpretrain_reproduces_the_last_validation(
        trained, shapes_cls, tmp_path):
    """mmpretrain's test.py on the last checkpoint: the accuracy the run
    logged when it validated that checkpoint."""
    run_tool(MIM, 'test', 'mmpretrain', DEMO, '--checkpoint',
             osp.join(trained, 'epoch_2.pth'), '--work-dir', str(tmp_path),
             '--out', str(tmp_path / 'metrics.json'), '--out-item',
             'metrics', *demo_options(shapes_cls))
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    assert metrics['accuracy/top1'] == pytest.approx(
        last_val_accuracy(trained))


def test_mim_test_mmdet(mask_run, shapes_coco, tmp_path):
    work_dir, _ = mask_run
    result = run_tool(MIM, 'test', 'mmdet', MASK_DEMO, '--checkpoint',
                      osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
                      str(tmp_path), *det_options(shapes_coco))
    log = result.stdout + result.stderr
    [logged] = [r for r in scalars(work_dir) if 'coco/bbox_mAP' in r]
    for kind in ('bbox', 'segm'):
        # mmdet prints mAP, mAP_50, ... of the run, 3 decimals each
        line = re.findall(rf'{kind}_mAP_copypaste: ([-0-9. ]+)', log)[-1]
        printed = [float(v) for v in line.split()]
        assert printed[:2] == [
            round(logged[f'coco/{kind}_mAP'], 3),
            round(logged[f'coco/{kind}_mAP_50'], 3)
        ], kind


@pytest.mark.parametrize('package, config, model_type', [
    ('mmpretrain', DEMO, "type='CoTNet'"),
    ('mmdet', MASK_DEMO, "type='CoTNet'"),
])
def test_print_config(package, config, model_type):
    result = run_tool(MIM, 'run', package, 'print_config', config)
    assert model_type in result.stdout
    assert "default_scope = '" + package + "'" in result.stdout


def test_mmpretrain_browse_dataset(shapes_cls, tmp_path):
    run_tool(MIM, 'run', 'mmpretrain', 'browse_dataset', DEMO, '-o',
             str(tmp_path), '-n', '3', '-m', 'original',
             *demo_options(shapes_cls))
    assert len(os.listdir(tmp_path)) == 3


def test_mmdet_browse_dataset(shapes_coco, tmp_path):
    run_tool(MIM, 'run', 'mmdet', 'browse_dataset', MASK_DEMO,
             '--output-dir', str(tmp_path), '--not-show',
             *det_options(shapes_coco))
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.listdir(osp.join(shapes_coco, 'train')))


@pytest.mark.parametrize('package', ['mmpretrain', 'mmdet'])
def test_analyze_logs_plots_the_loss(package, trained, mask_run, tmp_path):
    work_dir = trained if package == 'mmpretrain' else mask_run[0]
    [log] = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    out = tmp_path / 'loss.png'
    run_tool(MIM, 'run', package, 'analyze_logs', 'plot_curve', log,
             '--keys', 'loss', '--out', str(out))
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_mmpretrain_confusion_matrix(trained, shapes_cls, tmp_path):
    """Its diagonal holds the images classified right: the accuracy the
    run logged for the checkpoint."""
    run_tool(MIM, 'run', 'mmpretrain', 'confusion_matrix', DEMO,
             osp.join(trained, 'epoch_2.pth'), '--out',
             str(tmp_path / 'cm.pkl'), *demo_options(shapes_cls))
    with open(tmp_path / 'cm.pkl', 'rb') as f:
        matrix = pickle.load(f)
    assert tuple(matrix.shape) == (6, 6)
    assert int(matrix.sum()) == 24
    assert 100 * float(matrix.trace()) / 24 == pytest.approx(
        last_val_accuracy(trained))
