"""Every detection config loads and builds; each detector type computes
losses and predictions with a CoT backbone; the recipe is the paper's."""
import glob
import os.path as osp

import pytest
import torch
import torch.nn as nn
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
PAPER_CONFIGS = [c for c in CONFIGS if c.endswith('-1x_coco.py')]
SCHEDULE_90K_CONFIGS = [c for c in CONFIGS if c.endswith('-90k_coco.py')]
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
    assert sorted(
        c.replace('-90k_', '-1x_') for c in SCHEDULE_90K_CONFIGS) == [
            c for c in PAPER_CONFIGS if '_cotnet50_' in c
        ]
    assert set(CONFIGS) - set(PAPER_CONFIGS) - set(SCHEDULE_90K_CONFIGS) == {
        c for c in CONFIGS if c.endswith('_shapes.py')
    }


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
    if model.roi_head.with_mask:
        mask_head = model.roi_head.mask_head  # one, as the official runs
        assert not isinstance(mask_head, nn.ModuleList) or len(mask_head) == 1


@pytest.mark.parametrize('path', PAPER_CONFIGS + SCHEDULE_90K_CONFIGS)
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
    heads = heads if isinstance(heads, list) else [heads]
    for head in heads:
        assert head.type == 'Shared4Conv1FCBBoxHead'
        assert head.norm_cfg == syncbn
    # SMOOTH_L1_BETA 0.0 (L1) for the RPN and every box head
    l1 = dict(type='L1Loss', loss_weight=1.0)
    assert model.rpn_head.loss_bbox == l1
    assert all(head.loss_bbox == l1 for head in heads)
    if 'mask_head' in model.roi_head:
        assert model.roi_head.mask_head.norm_cfg == syncbn
    assert model.data_preprocessor.bgr_to_rgb
    assert model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.optim_wrapper.optimizer.lr == 0.02
    assert cfg.auto_scale_lr.base_batch_size == 16
    resize = cfg.train_dataloader.dataset.pipeline[2]
    scales = resize.get('scale') or resize.get('scales')
    assert min(s[1] for s in scales) == 640
    assert max(s[1] for s in scales) == 800
    # the official runs: WEIGHT_DECAY_NORM 0, WARMUP_ITERS 1000 from
    # WARMUP_FACTOR 0.001 (the lr by iteration: test_official_lr_schedule)
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin,
            warmup.end) == ('LinearLR', 0.001, False, 0, 1001)
    if path in SCHEDULE_90K_CONFIGS:
        # MAX_ITER 90000, STEPS (60000, 80000), EVAL_PERIOD 0 (once, at the
        # end), CHECKPOINT_PERIOD 5000
        assert cfg.train_cfg == dict(
            type='IterBasedTrainLoop', max_iters=90000, val_interval=90000)
        assert (steps.type, steps.by_epoch, steps.milestones, steps.gamma,
                steps.end) == ('MultiStepLR', False, [60000, 80000], 0.1,
                               90000)
        assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
        checkpoint = cfg.default_hooks.checkpoint
        assert (checkpoint.by_epoch, checkpoint.interval) == (False, 5000)
        assert not cfg.log_processor.by_epoch
    else:
        # 12 epochs, steps after 8 and 11: 60k / 80k of 90k iterations
        assert cfg.train_cfg.max_epochs == 12
        assert (steps.type, steps.by_epoch, steps.milestones,
                steps.gamma) == ('MultiStepLR', True, [8, 11], 0.1)
    # PRECISE_BN: 200 iterations of 16 images, once at the end
    assert cfg.custom_hooks == [dict(type='RecomputeBNHook', num_iters=200)]
    assert cfg.train_dataloader.batch_size * 8 == 16
    # MIN_SIZE_TRAIN_SAMPLING of the official run behind each number
    name = osp.basename(path)
    if name.startswith('cascade'):
        # CascadeROIHeads: stages weighted 1:1:1, the features' gradient / 3,
        # BBOX_REG_WEIGHTS, IOUS, later stages relabel without sampling
        roi = model.roi_head
        assert roi.type == 'Detectron2CascadeRoIHead'
        assert roi.stage_loss_weights == [1, 1, 1]
        assert roi.feature_grad_scale == pytest.approx(1 / 3)
        for head, weights in zip(heads, ((10, 10, 5, 5), (20, 20, 10, 10),
                                         (30, 30, 15, 15))):
            assert head.reg_class_agnostic
            assert head.bbox_coder.target_stds == pytest.approx(
                [1 / w for w in weights])
        stages = model.train_cfg.rcnn
        assert [s.assigner.pos_iou_thr for s in stages] == [0.5, 0.6, 0.7]
        assert [s.sampler.type for s in stages
                ] == ['RandomSampler', 'PseudoSampler', 'PseudoSampler']
    sampled_from_range = name.startswith(('faster', 'cascade-rcnn')) or any(
        name.startswith(f'{detector}_{backbone}_')
        for detector, backbone in (('mask-rcnn', 'cotnet101'),
                                   ('mask-rcnn', 'cotnext101'),
                                   ('cascade-mask-rcnn', 'cotnext101')))
    assert resize.type == ('RandomResize'
                           if sampled_from_range else 'RandomChoiceResize')
    assert ('_ms-range-' in name) == sampled_from_range


@pytest.mark.parametrize('path', SCHEDULE_90K_CONFIGS)
def test_90k_config_changes_only_the_schedule(path):
    cfg, one_x = load(path), load(path.replace('-90k_', '-1x_'))
    changed = {
        key
        for key in set(cfg) | set(one_x) if cfg.get(key) != one_x.get(key)
    } - {key for key in cfg if key.startswith('cot_')}  # the bases' values
    assert changed == {
        'train_cfg', 'param_scheduler', 'train_dataloader', 'default_hooks',
        'log_processor'
    }
    for key, part in (('train_dataloader', 'sampler'),
                      ('default_hooks', 'checkpoint')):
        assert {k: v for k, v in cfg[key].items() if k != part} == {
            k: v
            for k, v in one_x[key].items() if k != part
        }


def test_official_lr_schedule():
    """The lr of each iteration of the -90k configs is detectron2's
    WarmupMultiStepLR: 0.02 x (0.001 (1 - i / 1000) + i / 1000) before
    iteration 1000, then x0.1 from 60000 and again from 80000."""
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = load(SCHEDULE_90K_CONFIGS[0])
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.02)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
        for s in cfg.param_scheduler
    ]
    lrs = []
    for _ in range(90000):
        lrs.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()

    def detectron2(i):
        warmup = 0.001 * (1 - i / 1000) + i / 1000 if i < 1000 else 1.
        return 0.02 * warmup * 0.1**((i >= 60000) + (i >= 80000))

    for i in (0, 1, 500, 999, 1000, 59999, 60000, 79999, 80000, 89999):
        assert lrs[i] == pytest.approx(detectron2(i), rel=1e-9), i


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
