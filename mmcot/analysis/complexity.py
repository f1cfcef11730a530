"""FLOPs of models with CoT layers in MMEngine's complexity analysis.

MMEngine's :class:`~mmengine.analysis.FlopAnalyzer` counts multiply-adds of
the ATen ops it knows (convs, linear layers, ...) and skips others. The
local aggregation runs as the custom operator ``mmcot::local_aggregation``,
which it would skip:
:data:`COT_FLOP_HANDLES` counts it as ``K*K`` multiply-adds per output
element, the convention of the paper's tables.
"""
from typing import Any, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from mmcot.deployment import ClassScores


def local_aggregation_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of one local aggregation: ``numel(out) * K*K``.

    inputs: values (N, C, H, W), weights (N, heads, G, K*K, H', W'), ...
    outputs: (N, heads*C, H', W').
    """
    taps = get_shape(inputs[1])[3]
    out_shape = get_shape(outputs[0])
    numel = 1
    for size in out_shape:
        numel *= size
    return numel * taps


COT_FLOP_HANDLES = {
    'mmcot::local_aggregation': local_aggregation_flop_jit,
}


#: the names FlopAnalyzer.by_operator() gives the handled operators
#: (without their namespace)
AGGREGATION_OPERATORS = tuple(
    name.split('::')[-1] for name in COT_FLOP_HANDLES)


def cot_flop_analyzer(model: torch.nn.Module, inputs) -> FlopAnalyzer:
    """A FlopAnalyzer that also counts the local aggregation.

    The compiled op must be in use (``mmcot._ext`` built): the pure-PyTorch
    fallback is traced as ``unfold`` and elementwise ops, which MMEngine
    does not count.
    """
    from mmcot.ops import ext_available
    if not ext_available():
        raise RuntimeError('counting FLOPs of CoT layers needs the compiled '
                           'op (mmcot._ext); build it with '
                           '`pip install --no-build-isolation -e .`')
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**COT_FLOP_HANDLES)
    return analyzer


class DetectorTensors(torch.nn.Module):
    """A detector as images -> the raw outputs of its heads, for tracing.

    Runs ``detector(images, data_samples, mode='tensor')``: backbone, neck,
    the RPN's proposals (``test_cfg.rpn``) and the RoI heads on them, as
    mmdet's own ``get_flops.py`` counts a detector.

    Args:
        detector (nn.Module): An mmdet detector, in eval mode.
        images (Tensor): The batch the data samples describe, (N, 3, H, W).
    """

    def __init__(self, detector: torch.nn.Module, images: torch.Tensor):
        super().__init__()
        from mmdet.structures import DetDataSample
        self.detector = detector
        height, width = images.shape[-2:]
        meta = dict(img_shape=(height, width), ori_shape=(height, width),
                    pad_shape=(height, width),
                    batch_input_shape=(height, width),
                    scale_factor=(1., 1.))
        self.data_samples = [
            DetDataSample(metainfo=meta) for _ in range(len(images))
        ]
        #: proposals the RoI heads ran on in the last forward
        self.num_proposals = None

    def forward(self, images: torch.Tensor):
        outputs = self.detector(images, self.data_samples, mode='tensor')
        if hasattr(self.detector, 'roi_head'):
            roi_outputs = outputs[-1]
            while not isinstance(roi_outputs, torch.Tensor):
                roi_outputs = roi_outputs[0]
            self.num_proposals = int(roi_outputs.shape[0])
        return outputs


def _quiet_analyzer(model: torch.nn.Module, inputs: tuple) -> FlopAnalyzer:
    analyzer = cot_flop_analyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return analyzer


def _mask_heads(roi_head) -> list:
    """(mask head, RoI feature size) of each stage of an RoI head."""
    if roi_head is None or not roi_head.with_mask:
        return []
    heads, extractors = roi_head.mask_head, roi_head.mask_roi_extractor
    if not isinstance(heads, torch.nn.ModuleList):
        heads, extractors = [heads], [extractors]
    elif not isinstance(extractors, torch.nn.ModuleList):
        extractors = [extractors] * len(heads)
    return [(head, extractor.roi_layers[0].output_size)
            for head, extractor in zip(heads, extractors)]


def _detector_flops(detector: torch.nn.Module, images: torch.Tensor):
    """FLOPs of a detector at inference: the detector without its mask
    heads in ``tensor`` mode, plus each mask head on the
    ``test_cfg.rcnn.max_per_img`` detections it is given at inference (in
    ``tensor`` mode mmdet runs Mask R-CNN's on 100 proposals but each
    cascade stage's on all of them)."""
    roi_head = getattr(detector, 'roi_head', None)
    mask_heads = _mask_heads(roi_head)
    if mask_heads:
        saved = roi_head.mask_head
        roi_head.mask_head = None
    try:
        counted = DetectorTensors(detector, images)
        analyzer = _quiet_analyzer(counted, (images, ))
        flops = analyzer.total()
    finally:
        if mask_heads:
            roi_head.mask_head = saved
    detections = detector.test_cfg.rcnn.max_per_img if mask_heads else None
    for head, size in mask_heads:
        features = torch.randn(detections, head.in_channels, *size)
        flops += _quiet_analyzer(head, (features, )).total()
    return analyzer, flops, counted.num_proposals, detections


#: (H, W) a detector is counted at: mmdet's convention, 1280x800 (W x H)
DETECTION_SHAPE = (800, 1280)
#: (H, W) a segmentor is counted at: mmseg's ADE20K crop
SEGMENTATION_SHAPE = (512, 512)


def default_input_shape(cfg) -> tuple:
    """(H, W) a config's model is counted at: a classifier's test crop
    (its test pipeline's ``CenterCrop``, else 224), a detector's
    :data:`DETECTION_SHAPE`, a segmentor's :data:`SEGMENTATION_SHAPE`."""
    if cfg.get('default_scope') == 'mmdet':
        return DETECTION_SHAPE
    if cfg.get('default_scope') == 'mmseg':
        return SEGMENTATION_SHAPE
    for step in cfg.test_dataloader.dataset.get('pipeline', []):
        if step.get('type') == 'CenterCrop':
            size = step['crop_size']
            return tuple(size) if isinstance(size, (list, tuple)) else (
                size, size)
    return (224, 224)


def model_complexity(cfg, shape) -> dict:
    """Params and FLOPs of a config's model for one (3, H, W) image.

    Classification configs count the whole classifier. Detection configs
    (``default_scope='mmdet'``) count the whole detector at inference on a
    fixed random image: backbone, neck, RPN, the box heads on the proposals
    the RPN keeps (``test_cfg.rpn.max_per_img``) and the mask heads on the
    detections (``test_cfg.rcnn.max_per_img``). Segmentation configs
    (``default_scope='mmseg'``) count the segmentor at inference (backbone
    and decode head, in ``tensor`` mode); its params include the auxiliary
    head, which only training uses.

    Returns:
        dict: ``counted`` (what was counted), ``shape``, ``params``,
        ``flops`` (multiply-adds), ``aggregation_flops`` (of which the local
        aggregation), ``proposals`` and ``mask_rois`` (detectors: how many
        RoIs the box and the mask heads ran on, else None) and ``analyzer``
        (the FlopAnalyzer of the classifier, or of the detector without its
        mask heads, for tables).
    """
    from mmengine.analysis import parameter_count
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.eval()
    images = torch.randn(1, 3, *shape,
                         generator=torch.Generator().manual_seed(0))
    proposals = mask_rois = None
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmdet':
            what = 'detector'
            analyzer, flops, proposals, mask_rois = _detector_flops(
                model, images)
        elif scope == 'mmseg':
            what = 'segmentor'
            analyzer = _quiet_analyzer(model, (images, ))
            flops = analyzer.total()
        else:
            what = 'classifier'
            analyzer = _quiet_analyzer(ClassScores(model), (images, ))
            flops = analyzer.total()
    return dict(
        counted=what,
        shape=list(shape),
        params=parameter_count(model)[''],
        flops=flops,
        aggregation_flops=sum(analyzer.by_operator().get(name, 0)
                              for name in AGGREGATION_OPERATORS),
        proposals=proposals,
        mask_rois=mask_rois,
        analyzer=analyzer)
