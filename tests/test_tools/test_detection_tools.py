"""Detection through the tools a user already has: tools/train.py and
tools/test.py, tools/dist_train.sh, mim, DetInferencer."""
import json
import os
import os.path as osp
import pickle

import pytest
import torch

from ..conftest import MIM, free_port, needs_mim, run_tool
from .conftest import FASTER_DEMO, MASK_DEMO, det_options, scalars


def test_mask_demo_trains_and_evaluates_with_coco_metrics(mask_run):
    work_dir, log = mask_run
    # single process: the runner turns SyncBN into BN and says so
    assert 'SyncBatchNorm (SyncBN) layers in the model will be ' \
           'automatically reverted' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_test_tool_reproduces_the_validation_ap(mask_run, shapes_coco,
                                                tmp_path):
    """tools/test.py on the checkpoint: the box and mask APs the run logged
    when it validated it."""
    work_dir, _ = mask_run
    [logged] = [r for r in scalars(work_dir) if 'coco/bbox_mAP' in r]
    run_tool('tools/test.py', MASK_DEMO, osp.join(work_dir, 'epoch_1.pth'),
             '--work-dir', str(tmp_path), '--out',
             str(tmp_path / 'metrics.json'), '--out-item', 'metrics',
             *det_options(shapes_coco))
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        assert metrics[f'coco/{key}'] == logged[f'coco/{key}'], key


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
    config = ('configs/faster_rcnn/'
              'faster-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py')
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


def test_test_tool_draws_detections(mask_run, shapes_coco, tmp_path):
    """--show-dir: every val image, drawn with its ground truth beside the
    predictions, under its own name, in the folder given."""
    import mmcv
    work_dir, _ = mask_run
    show_dir = tmp_path / 'drawn'
    run_tool('tools/test.py', MASK_DEMO, osp.join(work_dir, 'epoch_1.pth'),
             '--work-dir', str(tmp_path / 'work'), '--show-dir',
             str(show_dir), *det_options(shapes_coco))
    val_images = sorted(os.listdir(osp.join(shapes_coco, 'val')))
    assert sorted(os.listdir(show_dir)) == val_images
    for name in val_images:
        source = mmcv.imread(osp.join(shapes_coco, 'val', name))
        drawn = mmcv.imread(str(show_dir / name))
        # ground truth | predictions, side by side
        assert drawn.shape[0] == source.shape[0]
        assert drawn.shape[1] == 2 * source.shape[1]


@pytest.fixture(scope='module')
def faster_checkpoint(mask_run, tmp_path_factory):
    """The mask demo's weights without the mask branch: the Faster R-CNN
    demo's model."""
    from mmcot.engine import load_local_checkpoint
    work_dir, _ = mask_run
    state_dict = load_local_checkpoint(osp.join(work_dir,
                                                'epoch_1.pth'))['state_dict']
    path = str(tmp_path_factory.mktemp('faster') / 'faster.pth')
    torch.save({
        'state_dict': {
            k: v
            for k, v in state_dict.items() if not k.startswith('roi_head.mask')
        }
    }, path)
    return path


def test_test_tool_tta_merges_flipped_boxes(faster_checkpoint, shapes_coco,
                                            tmp_path):
    run_tool('tools/test.py', FASTER_DEMO, faster_checkpoint, '--work-dir',
             str(tmp_path), '--out', str(tmp_path / 'plain.pkl'),
             *det_options(shapes_coco))
    result = run_tool('tools/test.py', FASTER_DEMO, faster_checkpoint,
                      '--work-dir', str(tmp_path), '--tta', '--out',
                      str(tmp_path / 'tta.pkl'), *det_options(shapes_coco))
    assert 'bbox_mAP_copypaste' in result.stdout + result.stderr
    with open(tmp_path / 'plain.pkl', 'rb') as f:
        plain = pickle.load(f)
    with open(tmp_path / 'tta.pkl', 'rb') as f:
        tta = pickle.load(f)
    assert [p['img_path'] for p in tta] == [p['img_path'] for p in plain]
    for merged, single in zip(tta, plain):
        boxes = merged['pred_instances']['bboxes']
        height, width = merged['ori_shape']
        assert 0 < len(boxes) <= 100
        xs, ys = boxes[:, 0::2], boxes[:, 1::2]
        assert xs.min() >= -1 and xs.max() <= width + 1
        assert ys.min() >= -1 and ys.max() <= height + 1
        assert not torch.equal(boxes, single['pred_instances']['bboxes'])


def test_test_tool_refuses_tta_of_masks(mask_run, shapes_coco, tmp_path):
    work_dir, _ = mask_run
    result = run_tool('tools/test.py', MASK_DEMO,
                      osp.join(work_dir, 'epoch_1.pth'), '--work-dir',
                      str(tmp_path), '--tta', *det_options(shapes_coco),
                      check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: --tta: mmdet merges flipped boxes but not masks')
