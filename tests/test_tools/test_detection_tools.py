"""Detection through the tools a user already has: tools/train.py and
tools/test.py, tools/dist_train.sh, mim, DetInferencer."""
import os.path as osp

import pytest

from ..conftest import MIM, free_port, needs_mim, run_tool

MASK_DEMO = 'configs/mask_rcnn/mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py'
FASTER_DEMO = ('configs/faster_rcnn/'
               'faster-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py')


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


@pytest.fixture(scope='module')
def mask_run(shapes_coco, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('mask_demo'))
    result = run_tool('tools/train.py', MASK_DEMO, '--work-dir', work_dir,
                      *det_options(shapes_coco))
    return work_dir, result.stdout + result.stderr


def test_mask_demo_trains_and_evaluates_with_coco_metrics(mask_run):
    work_dir, log = mask_run
    # single process: the runner turns SyncBN into BN and says so
    assert 'SyncBatchNorm (SyncBN) layers in the model will be ' \
           'automatically reverted' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_test_tool_computes_bbox_and_segm_ap(mask_run, shapes_coco,
                                              tmp_path):
    work_dir, _ = mask_run
    result = run_tool('tools/test.py', MASK_DEMO,
                      osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
                      str(tmp_path), *det_options(shapes_coco))
    log = result.stdout + result.stderr
    assert 'bbox_mAP_copypaste' in log and 'segm_mAP_copypaste' in log


def test_det_inferencer_detects_and_draws(mask_run, shapes_coco, tmp_path):
    from mmdet.apis import DetInferencer
    work_dir, _ = mask_run
    inferencer = DetInferencer(
        model=MASK_DEMO, weights=osp.join(work_dir, 'epoch_1.pth'),
        device='cpu')
    image = osp.join(shapes_coco, 'val', '00001.png')
    result = inferencer(image, out_dir=str(tmp_path), no_save_pred=False)
    [prediction] = result['predictions']
    assert set(prediction) >= {'labels', 'scores', 'bboxes', 'masks'}
    assert all(0 <= label < 6 for label in prediction['labels'])
    assert osp.isfile(tmp_path / 'vis' / '00001.png')
    assert osp.isfile(tmp_path / 'preds' / '00001.json')


@needs_mim
def test_faster_demo_under_mim_train_mmdet(shapes_coco, tmp_path):
    result = run_tool(MIM, 'train', 'mmdet', FASTER_DEMO, '--work-dir',
                      str(tmp_path), *det_options(shapes_coco))
    log = result.stdout + result.stderr
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' not in log
    assert osp.isfile(tmp_path / 'epoch_1.pth')


def test_syncbn_config_in_a_two_process_cpu_run(shapes_coco, tmp_path):
    """SyncBN cannot synchronise CPU tensors: tools/train.py builds BN
    instead, says so, and the distributed run trains."""
    result = run_tool(
        'tools/dist_train.sh', FASTER_DEMO, '2', '--work-dir', str(tmp_path),
        *det_options(shapes_coco, **{'train_cfg.val_interval': 2}),
        env={'PORT': free_port(), 'OMP_NUM_THREADS': '1'})
    log = result.stdout + result.stderr
    assert 'SyncBN layers replaced by BN' in log
    assert osp.isfile(tmp_path / 'epoch_1.pth')


def test_missing_pretrained_checkpoint_fails_at_once(shapes_coco, tmp_path):
    config = 'configs/faster_rcnn/faster-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py'
    root = shapes_coco.rstrip('/') + '/'
    result = run_tool(
        'tools/train.py', config, '--work-dir', str(tmp_path),
        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', check=False)
    assert result.returncode != 0
    assert ("model.backbone.init_cfg.checkpoint is "
            "'checkpoints/cotnet50_mmcot.pth', which does not exist"
            in result.stderr)
    assert 'cotnet_to_mmcot.py' in result.stderr
