from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.models.utils import empty_instances, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi, get_box_tensor
from mmdet.utils import InstanceList
from mmengine.model import ModuleList
from mmengine.structures import InstanceData
from torch import Tensor


class _ScaleGradient(torch.autograd.Function):
    """The identity, whose gradient is multiplied by ``scale``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


@MODELS.register_module()
class Detectron2CascadeRoIHead(CascadeRoIHead):
    """Cascade R-CNN's RoI head trained and tested as detectron2's
    ``CascadeROIHeads`` does it (the official CoTNet detection runs).

    What differs from :class:`mmdet.models.roi_heads.CascadeRoIHead`:

    - RoIs are sampled once. The first stage assigns and samples the
      proposals as mmdet does (ground truth added); each later stage takes
      every box the stage before regressed from those same RoIs, the ones
      that came from ground truth included and empty ones dropped, and its
      assigner relabels them at its own IoU threshold. Its sampler then sees
      the relabelled boxes: ``PseudoSampler`` keeps them all, as detectron2.
    - Each stage's features pass their gradient back multiplied by
      ``feature_grad_scale``: detectron2 sums the stage losses (weights
      1, 1, 1) for the heads and scales the gradient reaching the features
      by 1 / num_stages.
    - The test scores are the mean over the stages of the class
      probabilities (mmdet averages the logits).
    - One mask head (and RoI extractor), trained on the positive RoIs of the
      first stage and applied to the final boxes; its loss is ``s0.loss_mask``
      and its weights ``mask_head.0.*``.

    Args:
        num_stages (int): Number of stages.
        stage_loss_weights (Sequence[float]): Weight of each stage's losses.
        feature_grad_scale (float): Factor on the gradient each stage sends
            back to the features. Default: 1.0 (mmdet's behaviour).
        **kwargs: As :class:`CascadeRoIHead` (``bbox_roi_extractor``,
            ``bbox_head``: softmax classifiers; ``mask_roi_extractor`` and
            ``mask_head``: one config each, not lists; ``train_cfg``,
            ``test_cfg``, ``init_cfg``).
    """

    def __init__(self,
                 num_stages: int,
                 stage_loss_weights: Sequence[float],
                 feature_grad_scale: float = 1.0,
                 **kwargs) -> None:
        if type(num_stages) is not int or num_stages < 1:
            raise ValueError(
                f'num_stages must be a positive int, got {num_stages!r}')
        if (type(feature_grad_scale) not in (int, float)
                or not 0 < feature_grad_scale <= 1):
            raise ValueError('feature_grad_scale must be in (0, 1], got '
                             f'{feature_grad_scale!r}')
        if (not isinstance(stage_loss_weights, (list, tuple))
                or len(stage_loss_weights) != num_stages):
            raise ValueError(
                f'stage_loss_weights must hold num_stages={num_stages} '
                f'weights, got {stage_loss_weights!r}')
        for name in ('bbox_head', 'bbox_roi_extractor'):
            value = kwargs.get(name)
            if isinstance(value, (list, tuple)) and len(value) != num_stages:
                raise ValueError(f'{name} must hold num_stages={num_stages} '
                                 f'configs, got {len(value)}')
        train_cfg = kwargs.get('train_cfg')
        if isinstance(train_cfg, (list, tuple)) and len(
                train_cfg) != num_stages:
            raise ValueError(f'train_cfg must hold num_stages={num_stages} '
                             f'stage configs, got {len(train_cfg)}')
        self.feature_grad_scale = feature_grad_scale
        super().__init__(num_stages, stage_loss_weights, **kwargs)
        for stage, head in enumerate(self.bbox_head):
            if head.custom_activation or head.loss_cls.use_sigmoid:
                raise ValueError(
                    f'bbox_head[{stage}] must classify with a softmax '
                    '(its probabilities are averaged over the stages)')

    def init_mask_head(self, mask_roi_extractor, mask_head) -> None:
        """One mask head; its RoI extractor, if not given, is the first
        stage's box RoI extractor."""
        if isinstance(mask_head, list) or isinstance(mask_roi_extractor,
                                                     list):
            raise TypeError(
                'Detectron2CascadeRoIHead has one mask head: mask_head and '
                'mask_roi_extractor must be configs, not lists')
        self.mask_head = ModuleList([MODELS.build(mask_head)])
        if mask_roi_extractor is None:
            self.share_roi_extractor = True
            self.mask_roi_extractor = self.bbox_roi_extractor
        else:
            self.share_roi_extractor = False
            self.mask_roi_extractor = ModuleList(
                [MODELS.build(mask_roi_extractor)])

    def _bbox_forward(self, stage: int, x: Tuple[Tensor],
                      rois: Tensor) -> dict:
        """Box head of ``stage`` on (n, 5) ``rois``: ``cls_score`` (n,
        num_classes + 1), ``bbox_pred`` (n, 4 or 4 * num_classes) and
        ``bbox_feats``; the gradient to ``x`` scaled by
        ``feature_grad_scale``."""
        if self.feature_grad_scale != 1:
            x = tuple(
                _ScaleGradient.apply(level, self.feature_grad_scale)
                for level in x)
        return super()._bbox_forward(stage, x, rois)

    def _regress(self, stage: int, rois: Tensor, labels: Tensor,
                 bbox_pred: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """(n, 4) boxes: ``stage``'s regression of (n, 5) ``rois`` (for the
        class in ``labels`` when it is class-specific), clipped to each
        image."""
        boxes = rois.new_empty(len(rois), 4)
        for i, img_meta in enumerate(batch_img_metas):
            in_image = rois[:, 0] == i
            boxes[in_image] = get_box_tensor(
                self.bbox_head[stage].regress_by_class(
                    rois[in_image, 1:], labels[in_image],
                    bbox_pred[in_image], img_meta))
        return boxes

    def _assign_and_sample(self, stage: int, x: Tuple[Tensor],
                           priors: List[Tensor],
                           batch_gt_instances: InstanceList,
                           batch_gt_instances_ignore: InstanceList) -> list:
        """``stage``'s assigner and sampler on each image's (n_i, 4)
        ``priors``: a list of ``SamplingResult``."""
        sampling_results = []
        for i, boxes in enumerate(priors):
            candidates = InstanceData(priors=boxes)
            assign_result = self.bbox_assigner[stage].assign(
                candidates, batch_gt_instances[i],
                batch_gt_instances_ignore[i])
            sampling_results.append(self.bbox_sampler[stage].sample(
                assign_result,
                candidates,
                batch_gt_instances[i],
                feats=[level[i][None] for level in x]))
        return sampling_results

    @torch.no_grad()
    def _next_stage_priors(self, stage: int, bbox_results: dict,
                           batch_img_metas: List[dict]) -> List[Tensor]:
        """Each image's non-empty boxes regressed by ``stage`` from all its
        RoIs (for a class-specific regression: the assigned class, or the
        predicted one for background RoIs)."""
        rois = bbox_results['rois']
        labels = bbox_results['bbox_targets'][0]
        background = labels == self.bbox_head[stage].num_classes
        predicted = bbox_results['cls_score'][:, :-1].argmax(dim=1)
        labels = torch.where(background, predicted, labels)
        boxes = self._regress(stage, rois, labels,
                              bbox_results['bbox_pred'], batch_img_metas)
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return [
            boxes[(rois[:, 0] == i) & nonempty]
            for i in range(len(batch_img_metas))
        ]

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Losses of all stages (``s{stage}.loss_cls``, ``.loss_bbox``,
        ``.acc``; ``s0.loss_mask``) on multi-level features ``x`` and the
        RPN's proposals of each image."""
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = (
            unpack_gt_instances(batch_data_samples))
        priors = [results.bboxes for results in rpn_results_list]
        losses = dict()
        for stage in range(self.num_stages):
            sampling_results = self._assign_and_sample(
                stage, x, priors, batch_gt_instances,
                batch_gt_instances_ignore)
            bbox_results = self.bbox_loss(stage, x, sampling_results)
            stage_losses = dict(bbox_results['loss_bbox'])
            if stage == 0 and self.with_mask:
                stage_losses.update(
                    self.mask_loss(0, x, sampling_results,
                                   batch_gt_instances)['loss_mask'])
            weight = self.stage_loss_weights[stage]
            for name, value in stage_losses.items():
                losses[f's{stage}.{name}'] = (
                    value * weight if 'loss' in name else value)
            if stage < self.num_stages - 1:
                priors = self._next_stage_priors(stage, bbox_results,
                                                 batch_img_metas)
                if sum(len(boxes) for boxes in priors) == 0:
                    break
        return losses

    def _refine_roi(self, x: Tuple[Tensor], rois: Tensor,
                    batch_img_metas: List[dict],
                    num_proposals_per_img: Sequence[int], **kwargs) -> tuple:
        """The stages in turn on (n, 5) ``rois``.

        Returns:
            tuple: per image, the RoIs the last stage saw; the logarithm of
            the stages' mean class probabilities (so that the softmax
            ``predict_by_feat`` applies gives that mean), (n_i,
            num_classes + 1); the last stage's box deltas.
        """
        probabilities = 0
        for stage in range(self.num_stages):
            bbox_results = self._bbox_forward(stage, x, rois)
            cls_score = bbox_results['cls_score']
            probabilities = probabilities + F.softmax(cls_score, dim=-1)
            if stage < self.num_stages - 1:
                labels = cls_score[:, :-1].argmax(dim=1)
                boxes = self._regress(stage, rois, labels,
                                      bbox_results['bbox_pred'],
                                      batch_img_metas)
                rois = torch.cat([rois[:, :1], boxes], dim=1)
        scores = (probabilities / self.num_stages).log()
        return (rois.split(num_proposals_per_img),
                scores.split(num_proposals_per_img),
                bbox_results['bbox_pred'].split(num_proposals_per_img))

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     results_list: InstanceList,
                     rescale: bool = False) -> InstanceList:
        """``results_list`` (each image's final boxes) with the mask head's
        ``masks`` (num_instances, H, W) added."""
        mask_rois = bbox2roi([results.bboxes for results in results_list])
        if mask_rois.shape[0] == 0:
            return empty_instances(
                batch_img_metas,
                mask_rois.device,
                task_type='mask',
                instance_results=results_list,
                mask_thr_binary=self.test_cfg.mask_thr_binary)
        mask_preds = self._mask_forward(0, x, mask_rois)['mask_preds']
        return self.mask_head[0].predict_by_feat(
            mask_preds=mask_preds.split([len(r) for r in results_list]),
            results_list=results_list,
            batch_img_metas=batch_img_metas,
            rcnn_test_cfg=self.test_cfg,
            rescale=rescale)

    def forward(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
                batch_data_samples: SampleList) -> tuple:
        """Raw outputs without post-processing, per image: class scores (as
        :meth:`_refine_roi`), box deltas and, with a mask head, mask
        probabilities (n_i, num_classes, 28, 28) of the final RoIs."""
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        proposals = [results.bboxes for results in rpn_results_list]
        rois, cls_scores, bbox_preds = self._refine_roi(
            x, bbox2roi(proposals), batch_img_metas,
            [len(p) for p in proposals])
        results = (cls_scores, bbox_preds)
        if self.with_mask:
            mask_preds = self._mask_forward(0, x, torch.cat(rois))
            results += (mask_preds['mask_preds'].sigmoid().split(
                [len(p) for p in proposals]), )
        return results
