"""FLOPs of the local aggregation, counted by the FLOP analyzer mmcot sets
up, against the count from the architecture."""
import pytest
from mmengine.config import Config

from mmcot.analysis import model_complexity

from ..conftest import REPO


def test_cotnet50_aggregation_flops():
    """CoTNet-50 at 224 px: one CoT layer per block, 3x3 windows, output
    C x H x W of (64, 56), (128, 28), (256, 14), (512, 7) in 3, 4, 6, 3
    blocks; one multiply-add per output element and tap."""
    result = model_complexity(
        Config.fromfile(f'{REPO}/configs/cotnet/cotnet50_8xb64_in1k.py'),
        (224, 224))
    expected = 9 * sum(blocks * c * size * size
                       for blocks, c, size in ((3, 64, 56), (4, 128, 28),
                                               (6, 256, 14), (3, 512, 7)))
    assert result['aggregation_flops'] == expected
    assert 0 < result['aggregation_flops'] < result['flops']


def test_detector_counts_mask_heads_on_the_detections():
    """Mask R-CNN less Faster R-CNN, same backbone and box head: the mask
    head on ``test_cfg.rcnn.max_per_img`` = 100 detections, from its
    layers: four 3x3 convs 256 -> 256 on 14x14 RoI features, a 2x2
    transposed conv to 28x28 and a 1x1 conv to the 80 classes (plus the
    norms and activations, under 0.1 %)."""
    shape = (800, 1280)
    faster, mask = (model_complexity(
        Config.fromfile(f'{REPO}/configs/{folder}/{name}'), shape)
        for folder, name in (
            ('faster_rcnn',
             'faster-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py'),
            ('mask_rcnn', 'mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py')))
    assert faster['counted'] == mask['counted'] == 'detector'
    assert faster['proposals'] == mask['proposals'] == 1000
    assert (faster['mask_rois'], mask['mask_rois']) == (None, 100)
    per_roi = (4 * 256 * 256 * 9 * 14 * 14 + 256 * 256 * 4 * 14 * 14 +
               256 * 80 * 28 * 28)
    assert mask['flops'] - faster['flops'] == pytest.approx(
        100 * per_roi, rel=1e-3)
    # the backbone's local aggregation at 200x320 after the stem
    expected = 9 * sum(blocks * c * (800 // stride) * (1280 // stride)
                       for blocks, c, stride in ((3, 64, 4), (4, 128, 8),
                                                 (6, 256, 16),
                                                 (3, 512, 32)))
    assert faster['aggregation_flops'] == mask['aggregation_flops'] == (
        expected)


@pytest.mark.parametrize('config, shape', [
    ('cotnet/cotnet50_8xb64_in1k.py', (224, 224)),
    ('cotnet/se-cotnetd152_8xb64-350e_in1k.py', (256, 256)),
    ('cotnet/se-cotnetd152_8xb64-350e_in1k-320px.py', (320, 320)),
    ('cotnet/cotnet-tiny_1xb32-15e_shapes.py', (224, 224)),  # no crop
    ('faster_rcnn/faster-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py',
     (800, 1280)),
])
def test_models_are_counted_at_their_test_size(config, shape):
    from mmcot.analysis import default_input_shape
    assert default_input_shape(
        Config.fromfile(f'{REPO}/configs/{config}')) == shape
