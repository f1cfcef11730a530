"""Detectron2CascadeRoIHead, built from the cascade of the detection configs
(configs/_base_/models/detectron2_cascade.py) with small heads, on one
64x64 image with one ground-truth box and proposals at known IoUs."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi, bbox_overlaps
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import mmcot  # noqa: F401

from ..conftest import REPO

CASCADE = Config.fromfile(
    osp.join(REPO, 'configs/_base_/models/detectron2_cascade.py'))
GT_BOX = [8., 8., 40., 40.]  # 32 x 32
GT_LABEL = 2
# shifted right by d pixels: IoU (32 - d) / (32 + d) with the ground truth
SHIFTS = (4., 7., 9., 20.)  # IoU 0.778, 0.641, 0.561, 0.231
EMPTY = [30., 30., 30., 40.]  # no width: regressed, it stays empty
PROPOSALS = [[8. + d, 8., 40. + d, 40.] for d in SHIFTS] + [EMPTY]


def build_head(feature_grad_scale=1 / 3, with_mask=False):
    cfg = CASCADE.cascade_roi_head.copy()
    cfg.update(
        num_stages=3,
        feature_grad_scale=feature_grad_scale,
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=8,
            featmap_strides=[4]),
        train_cfg=CASCADE.cascade_rcnn_train_cfg,
        test_cfg=dict(
            score_thr=0.,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100,
            mask_thr_binary=0.5))
    cfg.bbox_head = [
        dict(
            head,
            type='Shared2FCBBoxHead',
            in_channels=8,
            fc_out_channels=16,
            norm_cfg=None,
            num_classes=4) for head in cfg.bbox_head
    ]
    if with_mask:
        cfg.update(
            mask_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(
                    type='RoIAlign', output_size=14, sampling_ratio=0),
                out_channels=8,
                featmap_strides=[4]),
            mask_head=dict(
                type='FCNMaskHead',
                num_convs=1,
                in_channels=8,
                conv_out_channels=8,
                num_classes=4))
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg)


def shift_regression(head):
    """Every stage predicts dx = 1 (a shift right by std x width), nothing
    else, whatever the features."""
    for bbox_head in head.bbox_head:
        torch.nn.init.zeros_(bbox_head.fc_reg.weight)
        bbox_head.fc_reg.bias.data = torch.tensor([1., 0., 0., 0.])


def inputs(requires_grad=False):
    torch.manual_seed(0)
    x = (torch.randn(1, 8, 16, 16, requires_grad=requires_grad), )
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64)))
    mask = np.zeros((1, 64, 64), dtype=np.uint8)
    mask[0, 8:40, 8:40] = 1
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([GT_BOX]),
        labels=torch.tensor([GT_LABEL]),
        masks=BitmapMasks(mask, 64, 64))
    proposals = InstanceData(
        bboxes=torch.tensor(PROPOSALS),
        scores=torch.ones(len(PROPOSALS)))
    return x, [proposals], [sample]


def record_sampling(head, monkeypatch):
    """The SamplingResult list each stage's box loss receives."""
    seen = []
    bbox_loss = head.bbox_loss

    def spy(stage, x, sampling_results):
        seen.append(sampling_results)
        return bbox_loss(stage, x, sampling_results)

    monkeypatch.setattr(head, 'bbox_loss', spy)
    return seen


def sorted_boxes(boxes):
    return sorted(boxes.tolist())


def test_later_stages_relabel_every_regressed_box(monkeypatch):
    head = build_head()
    shift_regression(head)
    seen = record_sampling(head, monkeypatch)
    x, proposals, samples = inputs()
    head.loss(x, proposals, samples)
    assert len(seen) == 3
    gt = torch.tensor([GT_BOX])

    # stage 1: the five proposals and the ground truth, all sampled (512)
    [first] = seen[0]
    rois = torch.tensor(PROPOSALS + [GT_BOX])
    assert sorted_boxes(first.priors) == sorted_boxes(rois)
    assert len(first.pos_priors) == 4  # IoU >= 0.5: gt, 0.778, 0.641, 0.561

    # stages 2 and 3: the boxes before, shifted by 0.1 x w, then 0.05 x w,
    # the one from the ground truth kept, the empty one dropped, no ground
    # truth added, labels at IoU 0.6 and 0.7
    expected = torch.cat([rois[:4], gt])
    for stage, std in ((1, 0.1), (2, 0.05)):
        width = expected[:, 2] - expected[:, 0]
        expected[:, [0, 2]] += (std * width)[:, None]
        expected.clamp_(max=64.)  # clipped to the image
        [result] = seen[stage]
        assert torch.allclose(
            torch.tensor(sorted_boxes(result.priors)),
            torch.tensor(sorted_boxes(expected)),
            atol=1e-4)
        assert not (result.priors == gt).all(dim=1).any()
        iou = bbox_overlaps(expected, gt)[:, 0]
        threshold = (0.5, 0.6, 0.7)[stage]
        assert len(result.pos_priors) == int((iou >= threshold).sum())
        assert result.pos_gt_labels.tolist() == [GT_LABEL] * len(
            result.pos_priors)
    # IoUs by hand: stage 2 keeps gt (0.818) and 4 px (0.633) as positive,
    # stage 3 only gt (0.739)
    assert [len(seen[s][0].pos_priors) for s in (1, 2)] == [2, 1]


def test_stage_losses_are_l1_over_all_rois():
    head = build_head()
    shift_regression(head)
    x, proposals, samples = inputs()
    losses = head.loss(x, proposals, samples)
    # stage 1: predicted normalised dx is 1 for every RoI; the target of a
    # box d pixels right of the ground truth is -d / 32 / 0.1; dy, dw, dh
    # are 0 = prediction. L1 summed over the 4 positives, over 6 RoIs.
    errors = [1.] + [1. + d / 3.2 for d in SHIFTS[:3]]
    assert losses['s0.loss_bbox'].item() == pytest.approx(sum(errors) / 6)
    assert set(losses) == {
        f's{s}.{name}'
        for s in range(3) for name in ('loss_cls', 'loss_bbox', 'acc')
    }


def test_each_stage_sends_a_third_of_its_gradient_to_the_features():
    scaled = build_head(feature_grad_scale=1 / 3)
    plain = build_head(feature_grad_scale=1.)
    plain.load_state_dict(scaled.state_dict())
    for stage in range(3):
        gradients = []
        for head in (scaled, plain):
            x, proposals, samples = inputs(requires_grad=True)
            torch.manual_seed(1)  # the same sample order
            losses = head.loss(x, proposals, samples)
            stage_loss = (losses[f's{stage}.loss_cls'] +
                          losses[f's{stage}.loss_bbox'])
            head.zero_grad()
            stage_loss.backward()
            gradients.append(
                (x[0].grad.clone(), head.bbox_head[stage].fc_cls.weight.grad,
                 stage_loss.detach()))
        (x_scaled, w_scaled, l_scaled), (x_plain, w_plain, l_plain) = gradients
        assert torch.allclose(l_scaled, l_plain)
        assert x_plain.abs().sum() > 0
        assert torch.allclose(x_scaled, x_plain / 3, rtol=1e-5, atol=1e-8)
        assert torch.allclose(w_scaled, w_plain, rtol=1e-5, atol=1e-8)


def test_test_scores_are_the_mean_of_the_stages_probabilities():
    head = build_head().eval()
    for bbox_head in head.bbox_head:  # RoIs unchanged between stages
        torch.nn.init.zeros_(bbox_head.fc_reg.weight)
        torch.nn.init.zeros_(bbox_head.fc_reg.bias)
    x, proposals, samples = inputs()
    rois = bbox2roi([proposals[0].bboxes[:4]])
    with torch.no_grad():
        _, [scores], _ = head._refine_roi(x, rois, [samples[0].metainfo],
                                          [4])
        logits = [
            bbox_head(extractor(x, rois))[0] for extractor, bbox_head in zip(
                head.bbox_roi_extractor, head.bbox_head)
        ]
    expected = sum(F.softmax(s, dim=-1) for s in logits) / 3
    assert torch.allclose(F.softmax(scores, dim=-1), expected, atol=1e-6)
    mmdet_average = F.softmax(sum(logits) / 3, dim=-1)
    assert not torch.allclose(expected, mmdet_average, atol=1e-4)


def test_one_mask_head_trained_on_first_stage_rois(monkeypatch):
    head = build_head(with_mask=True)
    assert len(head.mask_head) == 1
    assert {k.split('.')[1]
            for k in head.state_dict() if k.startswith('mask_head.')} == {'0'}
    calls = []
    forward = head.mask_head[0].forward
    monkeypatch.setattr(head.mask_head[0], 'forward',
                        lambda feats: calls.append(len(feats)) or
                        forward(feats))
    x, proposals, samples = inputs()
    losses = head.loss(x, proposals, samples)
    assert [k for k in losses if 'mask' in k] == ['s0.loss_mask']
    assert calls == [4]  # the first stage's positives (IoU >= 0.5)

    head.eval()
    detections = InstanceData(
        bboxes=torch.tensor(PROPOSALS[:3]),
        labels=torch.tensor([0, 1, 2]),
        scores=torch.ones(3))
    with torch.no_grad():
        [result] = head.predict_mask(x, [dict(img_shape=(64, 64),
                                              ori_shape=(64, 64),
                                              scale_factor=(1., 1.))],
                                     [detections])
    assert calls == [4, 3]  # once, on the final boxes
    assert result.masks.shape == (3, 64, 64)


def test_detector_forward_in_tensor_mode():
    head = build_head(with_mask=True).eval()
    x, proposals, samples = inputs()
    with torch.no_grad():
        cls_scores, bbox_preds, masks = head.forward(x, proposals, samples)
    assert cls_scores[0].shape == (5, 5) and bbox_preds[0].shape == (5, 4)
    assert masks[0].shape == (5, 4, 28, 28)
    assert ((masks[0] >= 0) & (masks[0] <= 1)).all()


@pytest.mark.parametrize('change, error, match', [
    (dict(feature_grad_scale=0.), ValueError, 'feature_grad_scale'),
    (dict(stage_loss_weights=[1, 1]), ValueError, 'stage_loss_weights'),
    (dict(mask_head=[dict(type='FCNMaskHead')] * 3), TypeError, 'one mask'),
    (dict(feature_grad_scale='0.3'), ValueError, 'feature_grad_scale'),
    (dict(stage_loss_weights=1.0), ValueError, 'stage_loss_weights must '
     'hold num_stages=3 weights, got 1.0'),
    (dict(num_stages=2, stage_loss_weights=[1, 1]), ValueError,
     'bbox_head must hold num_stages=2 configs, got 3'),
    (dict(num_stages=0, stage_loss_weights=[]), ValueError,
     'num_stages must be a positive int'),
])
def test_bad_arguments(change, error, match):
    cfg = CASCADE.cascade_roi_head.copy()
    cfg.update(dict(num_stages=3, **change) if 'num_stages' not in change else
               change)
    cfg.bbox_roi_extractor = dict(
        type='SingleRoIExtractor',
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
        out_channels=256,
        featmap_strides=[4])
    with DefaultScope.overwrite_default_scope('mmdet'), \
            pytest.raises(error, match=match):
        MODELS.build(cfg)
