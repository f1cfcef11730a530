"""FLOPs of the local aggregation, counted by the FLOP analyzer mmcot sets
up, against the count from the architecture."""
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
