import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer

from mmcot.models.layers import BlurPool2d, CoTLayer, CoXtLayer
from mmcot.ops import local_aggregation_reference


def manual_cot_forward(layer, x):
    """The CoT layer written out step by step from the paper's equations,
    with the reference op: an independent check of the module's wiring."""
    k = layer.key_embed(x)
    n, c, h, w = x.shape
    qk = torch.cat([x, k], 1)
    a = layer.embed(qk).view(n, 1, c // 8, 9, h, w)
    v = layer.conv1x1(x)
    y = local_aggregation_reference(v, a, 3, padding=1)
    y = layer.bn(y)
    y = y * torch.sigmoid(y)
    gap = (y + k).mean((2, 3), keepdim=True)
    attn = layer.se(gap).view(n, c, 2).softmax(-1)
    return y * attn[..., 0, None, None] + k * attn[..., 1, None, None]


def test_cot_layer_matches_equations():
    torch.manual_seed(0)
    layer = CoTLayer(32, 32).eval()
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), manual_cot_forward(layer, x))


def test_build_conv_layer_gives_cot_in_place_of_3x3():
    layer = build_conv_layer(dict(type='CoT'), 64, 64, 3, stride=2,
                             padding=1, bias=False)
    assert isinstance(layer, CoTLayer)
    x = torch.randn(2, 64, 15, 16, requires_grad=True)
    out = layer(x)
    # a 3x3 conv with stride 2 and padding 1 gives the same size
    assert out.shape == F.conv2d(x, torch.zeros(64, 64, 3, 3), stride=2,
                                 padding=1).shape
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    coxt = build_conv_layer(dict(type='CoXt'), 96, 96, 3, padding=1)
    assert isinstance(coxt, CoXtLayer)
    assert coxt(torch.randn(2, 96, 8, 8)).shape == (2, 96, 8, 8)


def test_coxt_interleaves_query_and_key():
    layer = CoXtLayer(32, 32)
    x = torch.arange(4.).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    k = -x
    qk = layer.query_key(x, k)
    assert qk[0, :, 0, 0].tolist() == [0, -0, 1, -1, 2, -2, 3, -3]


def test_coxt_groups_are_independent():
    """CoXt's second half of the channels never sees the first half's
    values: perturbing value channel 0 leaves channels C/2.. unchanged
    before the fusion."""
    torch.manual_seed(0)
    layer = CoXtLayer(32, 32).eval()
    x = torch.randn(1, 32, 6, 6)
    n, c, h, w = x.shape
    k = layer.key_embed(x)
    a = layer.embed(layer.query_key(x, k)).view(2, 1, -1, 9, h, w)
    v = layer.conv1x1(x)
    v2 = v.clone()
    v2[:, 0] += 1
    y = layer.local_conv(v.view(2, 16, h, w), a).view(1, c, h, w)
    y2 = layer.local_conv(v2.view(2, 16, h, w), a).view(1, c, h, w)
    assert torch.equal(y[:, 16:], y2[:, 16:])
    assert not torch.equal(y[:, :16], y2[:, :16])


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=32, out_channels=64), 'out_channels == in_channels'),
    (dict(in_channels=32, out_channels=32, kernel_size=4), 'odd'),
    (dict(in_channels=32, out_channels=32, padding=0), 'padding must be 1'),
    (dict(in_channels=32, out_channels=32, groups=2), 'groups=1'),
    (dict(in_channels=32, out_channels=32, bias=True), 'bias'),
    (dict(in_channels=36, out_channels=36), 'divisible'),
])
def test_cot_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoTLayer(**kwargs)


def test_blur_pool_is_binomial_filter():
    pool = BlurPool2d(2)
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0, 2, 2] = 16
    out = pool(x)
    assert out.shape == (1, 2, 3, 3)
    # the impulse at (2, 2) falls in the centre tap (4/16) of output (1, 1)
    # only; the windows of (0, *) and (2, *) do not reach it
    expected = torch.zeros(2, 3, 3)
    expected[0, 1, 1] = 4
    torch.testing.assert_close(out[0], expected)
    # a constant map stays constant (reflection padding, normalised filter)
    torch.testing.assert_close(
        pool(torch.full((1, 2, 6, 6), 3.)), torch.full((1, 2, 3, 3), 3.))
    assert len(pool.state_dict()) == 0
