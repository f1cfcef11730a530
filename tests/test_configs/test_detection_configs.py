"""Every detection config loads and builds; each detector type computes
losses and predictions with a CoT backbone; the recipe is the paper's."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

import mmcot  # noqa: F401

from ..conftest import REPO

FAMILIES = ('faster_rcnn', 'cascade_rcnn', 'mask_rcnn', 'cascade_mask_rcnn')
TOKENS = ('cotnet50', 'cotnet101', 'cotnext50', 'cotnext101', 'se-cotnetd50',
          'se-cotnetd101')
CONFIGS = sorted(
    osp.relpath(p, REPO) for family in FAMILIES
    for p in glob.glob(osp.join(REPO, 'configs', family, '*.py')))
PAPER_CONFIGS = [c for c in CONFIGS if c.endswith('_coco.py')]
BACKBONES = {
    'cotnet50': ('CoTNet', 50),
    'cotnet101': ('CoTNet', 101),
    'cotnext50': ('CoTNeXt', 50),
    'cotnext101': ('CoTNeXt', 101),
    'se-cotnetd50': ('SECoTNetD', 50),
    'se-cotnetd101': ('SECoTNetD', 101),
}


def load(path):
    return Config.fromfile(osp.join(REPO, path))


def build(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_six_backbones_for_each_of_four_detectors():
    assert len(PAPER_CONFIGS) == 24
    for family in FAMILIES:
        names = [
            osp.basename(c) for c in PAPER_CONFIGS
            if c.startswith(f'configs/{family}/')
        ]
        assert sorted(n.split('_')[1] for n in names) == sorted(TOKENS)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_its_detector(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['mmcot']
    model = build(cfg)
    assert type(model.backbone).__module__.startswith('mmcot.')
    if path in PAPER_CONFIGS:
        token = osp.basename(path).split('_')[1]
        assert (type(model.backbone).__name__,
                model.backbone.depth) == BACKBONES[token]
        init = cfg.model.backbone.init_cfg
        assert init.type == 'Pretrained' and init.prefix == 'backbone.'
        assert init.checkpoint.startswith(f'checkpoints/{token}')
    assert model.roi_head.with_mask == ('mask' in osp.basename(path))


@pytest.mark.parametrize('path', PAPER_CONFIGS)
def test_paper_recipe(path):
    """FPN, SyncBN in backbone, neck and heads, 4conv1fc box head, 1x
    schedule at lr 0.02 for 16 images, [640, 800] shorter side, RGB."""
    cfg = load(path)
    model = cfg.model
    syncbn = dict(type='SyncBN', requires_grad=True)
    assert model.backbone.norm_cfg == syncbn
    assert model.backbone.frozen_stages == 1 and not model.backbone.norm_eval
    assert model.neck.type == 'FPN' and model.neck.norm_cfg == syncbn
    heads = model.roi_head.bbox_head
    for head in heads if isinstance(heads, list) else [heads]:
        assert head.type == 'Shared4Conv1FCBBoxHead'
        assert head.norm_cfg == syncbn
    if 'mask_head' in model.roi_head:
        assert model.roi_head.mask_head.norm_cfg == syncbn
    assert model.data_preprocessor.bgr_to_rgb
    assert model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_cfg.max_epochs == 12
    resize = cfg.train_dataloader.dataset.pipeline[2]
    scales = resize.get('scale') or resize.get('scales')
    assert min(s[1] for s in scales) == 640
    assert max(s[1] for s in scales) == 800
    # the official runs: WEIGHT_DECAY_NORM 0, WARMUP_ITERS 1000 from
    # WARMUP_FACTOR 0.001, steps at 60k / 80k of 90k (epochs 8, 11 of 12)
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin,
            warmup.end) == ('LinearLR', 0.001, False, 0, 1000)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR',
                                                           [8, 11], 0.1)
    # PRECISE_BN: 200 iterations of 16 images, once at the end
    assert cfg.custom_hooks == [dict(type='RecomputeBNHook', num_iters=200)]
    assert cfg.train_dataloader.batch_size * 8 == 16
    # MIN_SIZE_TRAIN_SAMPLING of the official run behind each number
    name = osp.basename(path)
    sampled_from_range = name.startswith(('faster', 'cascade-rcnn')) or any(
        name.startswith(f'{detector}_{backbone}_')
        for detector, backbone in (('mask-rcnn', 'cotnet101'),
                                   ('mask-rcnn', 'cotnext101'),
                                   ('cascade-mask-rcnn', 'cotnext101')))
    assert resize.type == ('RandomResize'
                           if sampled_from_range else 'RandomChoiceResize')
    assert ('_ms-range-1x_' in name) == sampled_from_range


def reduced(path):
    """A paper config with a one-block-per-stage backbone and fewer
    proposals (fast on CPU)."""
    cfg = load(path)
    cfg.model.backbone.stage_blocks = (1, 1, 1, 1)
    cfg.model.backbone.init_cfg = None
    cfg.model.train_cfg.rpn_proposal.max_per_img = 200
    cfg.model.test_cfg.rpn.max_per_img = 100
    return cfg


@pytest.mark.parametrize('family', FAMILIES)
def test_detector_loss_and_predict(family):
    from mmdet.testing import demo_mm_inputs
    [path] = [
        c for c in PAPER_CONFIGS
        if c.startswith(f'configs/{family}/') and '_cotnet50_' in c
    ]
    torch.manual_seed(0)
    model = revert_sync_batchnorm(build(reduced(path)))
    with_mask = 'mask' in family
    packed = demo_mm_inputs(
        2, [[3, 128, 160], [3, 128, 160]],
        num_items=[3, 2],
        num_classes=80,
        with_mask=with_mask)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    assert any('loss_cls' in k for k in losses)
    assert any('loss_mask' in k for k in losses) == with_mask
    total.backward()
    assert model.backbone.layer4[0].conv2.embed[0].weight.grad is not None

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False),
                        mode='predict')
    assert len(results) == 2
    for result in results:
        predictions = result.pred_instances
        assert predictions.bboxes.shape[1] == 4
        assert len(predictions.scores) == len(predictions.labels)
        assert ('masks' in predictions) == with_mask
