import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer

from mmcot.models.layers import (BlurPool2d, BoxPool2d, ChannelsLastMaxPool2d,
                                 CoTLayer, CoXtLayer)
from mmcot.ops import local_aggregation_reference

from .batch_norms import randomize_batch_norms


def manual_cot_forward(layer, x):
    """The CoT layer written out step by step from the paper's equations,
    with the reference op: an independent check of the module's wiring."""
    if layer.stride > 1:
        x = F.avg_pool2d(x, 3, layer.stride, padding=1)
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


@pytest.mark.parametrize('stride', [1, 2])
def test_cot_layer_matches_equations(stride):
    torch.manual_seed(0)
    layer = randomize_batch_norms(CoTLayer(32, 32, stride=stride)).eval()
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), manual_cot_forward(layer, x))


def test_cot_layer_gradients_match_equations():
    """Training mode: the gradients of the input, of the embedding's first
    conv (run split in two) and of the attention (through the lerp) equal
    the equations'."""
    torch.manual_seed(0)
    layer = CoTLayer(32, 32, stride=2).double()
    x = torch.randn(2, 32, 9, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 32, 5, 4, dtype=torch.float64)
    inputs = (x, layer.embed[0].weight, layer.se[-1].weight)
    grads = torch.autograd.grad(layer(x), inputs, grad)
    expected = torch.autograd.grad(manual_cot_forward(layer, x), inputs, grad)
    for g, g_expected in zip(grads, expected):
        torch.testing.assert_close(g, g_expected)


@pytest.mark.parametrize('layer_type', [CoTLayer, CoXtLayer])
@pytest.mark.parametrize('stride', [1, 2])
def test_channels_last_layer_equals_contiguous(layer_type, stride):
    """A layer and input in channels-last memory (what
    ``model.to(memory_format=torch.channels_last)`` gives) compute what the
    contiguous ones do, and give a channels-last output; the gradients too."""
    torch.manual_seed(0)
    layer = layer_type(64, 64, stride=stride).double()
    x = torch.randn(2, 64, 9, 7, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    grads = torch.autograd.grad(out, (x, layer.embed[0].weight),
                                torch.ones_like(out))
    layer = layer.to(memory_format=torch.channels_last)
    xc = x.detach().contiguous(
        memory_format=torch.channels_last).requires_grad_()
    out_c = layer(xc)
    assert out_c.is_contiguous(memory_format=torch.channels_last)
    grads_c = torch.autograd.grad(out_c, (xc, layer.embed[0].weight),
                                  torch.ones_like(out_c))
    torch.testing.assert_close(out_c, out)
    for got, want in zip(grads_c, grads):
        torch.testing.assert_close(got, want)


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


@pytest.mark.parametrize('layer_type,order', [
    (CoTLayer, 'concatenated'),
    (CoXtLayer, 'interleaved'),
])
def test_embedding_equals_conv_over_query_and_key(layer_type, order):
    """The split first conv gives what the official embed gives on the
    2C-channel input: [x, k] for CoT, x0, k0, x1, k1, ... for CoXt."""
    torch.manual_seed(0)
    layer = layer_type(32, 32).eval()
    x, k = torch.randn(2, 32, 5, 6), torch.randn(2, 32, 5, 6)
    if order == 'concatenated':
        qk = torch.cat([x, k], 1)
    else:
        qk = torch.empty(2, 64, 5, 6)
        qk[:, 0::2], qk[:, 1::2] = x, k
    with torch.no_grad():
        torch.testing.assert_close(
            layer.aggregation_weights(x, k), layer.embed(qk))
        # the other order gives other weights: the check tells them apart
        other = torch.cat([x, k], 1) if order == 'interleaved' else torch.cat(
            [x, k], 1).view(2, 2, 32, 5, 6).transpose(1, 2).flatten(1, 2)
        assert not torch.allclose(
            layer.aggregation_weights(x, k), layer.embed(other))


@pytest.mark.parametrize('layer_type', [CoTLayer, CoXtLayer])
@pytest.mark.parametrize('memory_format',
                         [torch.contiguous_format, torch.channels_last])
def test_inference_without_grad_equals_the_differentiable_path(
        layer_type, memory_format):
    """Without gradients the layer aggregates with the weights' GroupNorm
    inside one op (a CoXt layer's two cardinality groups each with their
    half of the GroupNorm's affine); with them, GroupNorm then the op. The
    two give the same output, from trained (non-trivial) GroupNorm and
    batch norm parameters."""
    torch.manual_seed(0)
    layer = randomize_batch_norms(layer_type(64, 64).eval())
    with torch.no_grad():
        layer.embed[-1].weight.uniform_(0.5, 1.5)
        layer.embed[-1].bias.uniform_(-1, 1)
    x = torch.randn(2, 64, 12, 10).contiguous(memory_format=memory_format)
    with torch.no_grad():
        fused = layer(x)
    differentiable = layer(x)
    assert differentiable.requires_grad
    torch.testing.assert_close(fused, differentiable, rtol=1e-5, atol=1e-5)


def test_coxt_groups_are_independent():
    """CoXt's second half of the channels never sees the first half's
    values: perturbing value channel 0 leaves channels C/2.. unchanged
    before the fusion."""
    torch.manual_seed(0)
    layer = CoXtLayer(32, 32).eval()
    x = torch.randn(1, 32, 6, 6)
    n, c, h, w = x.shape
    k = layer.key_embed(x)
    a = layer.aggregation_weights(x, k).view(2, 1, -1, 9, h, w)
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
    (dict(in_channels=32, out_channels=32, stride=0), 'stride must be a '
     'positive int, got 0'),
    (dict(in_channels=32, out_channels=32, stride=-1), 'stride'),
    (dict(in_channels=32, out_channels=32, stride=True), 'stride'),
    (dict(in_channels=32, out_channels=32, stride=(2, 2)), 'stride'),
    (dict(in_channels=32, out_channels=32, stride=2.0), 'stride'),
    (dict(in_channels=32, out_channels=32, kernel_size=-1), 'kernel_size'),
    (dict(in_channels=32, out_channels=32, dilation=-1), 'dilation must'),
    (dict(in_channels=32, out_channels=32, key_groups=0), 'key_groups'),
    (dict(in_channels=32, out_channels=32, share_planes=-8), 'share_planes'),
    (dict(in_channels=0, out_channels=0), 'in_channels'),
    (dict(in_channels=32, out_channels=32, cardinality=2), 'cardinality=1 '
     'only'),
])
def test_cot_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoTLayer(**kwargs)


def test_coxt_layer_bad_cardinality():
    with pytest.raises(ValueError, match=r'2 x cardinality \(32\)'):
        CoXtLayer(16, 16, cardinality=16, share_planes=1, key_groups=1)
    with pytest.raises(ValueError, match='cardinality must be a positive'):
        CoXtLayer(16, 16, cardinality=0)


@pytest.mark.parametrize('layer', [CoTLayer(16, 16), CoXtLayer(32, 32)])
def test_empty_batch_and_wrong_dims(layer):
    layer.eval()
    channels = layer.in_channels
    with torch.no_grad():
        assert layer(torch.randn(0, channels, 8, 8)).shape == (0, channels, 8,
                                                               8)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\) input, got shape '
                       rf'\({channels}, 8, 8\)'):
        layer(torch.randn(channels, 8, 8))


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


@pytest.mark.parametrize('stride,size', [(2, (9, 8)), (3, (7, 11)),
                                         (1, (4, 4))])
def test_box_pool_is_average_pool(stride, size):
    """BoxPool2d equals nn.AvgPool2d(3, stride, 1) (zero padding counted),
    shape and values, on the CPU's depthwise-conv path."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    pool = BoxPool2d(5, stride)
    expected = torch.nn.AvgPool2d(3, stride, padding=1)(x)
    torch.testing.assert_close(pool(x), expected)
    # an impulse in the corner reaches the first output with weight 1/9
    corner = torch.zeros(1, 5, *size)
    corner[..., 0, 0] = 9
    assert pool(corner)[0, :, 0, 0].tolist() == [1.] * 5
    assert len(pool.state_dict()) == 0


def test_box_pool_keeps_precision_under_autocast():
    """Under CPU autocast a conv would run in bfloat16 and round 1/9: the
    pool stays the float32 average pool there."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    pool = BoxPool2d(4, 2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = pool(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.avg_pool2d(x, 3, 2, padding=1),
                               rtol=0, atol=0)


@pytest.fixture
def pooled_formats(monkeypatch):
    """The memory format of each input nn.MaxPool2d.forward pools."""
    formats = []
    plain_forward = torch.nn.MaxPool2d.forward

    def recording_forward(pool, x):
        formats.append('channels_last' if x.is_contiguous(
            memory_format=torch.channels_last) else 'contiguous')
        return plain_forward(pool, x)

    monkeypatch.setattr(torch.nn.MaxPool2d, 'forward', recording_forward)
    return formats


@pytest.mark.parametrize('size,ceil_mode', [((12, 10), False), ((7, 9), True),
                                            ((5, 5), False)])
def test_channels_last_max_pool_is_max_pool(pooled_formats, size, ceil_mode):
    """Without gradients the pool runs in channels-last memory and gives
    nn.MaxPool2d's values, NaN, inf and ties included, contiguous."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, *size).relu()  # ties at 0
    x[0, 1, 2, 3], x[1, 4, 0, 0], x[1, 5, 3, 1] = float('nan'), float(
        'inf'), -float('inf')
    expected = torch.nn.MaxPool2d(3, 2, 1, ceil_mode=ceil_mode)(x)
    pool = ChannelsLastMaxPool2d(3, 2, 1, ceil_mode=ceil_mode)
    with torch.no_grad():
        out = pool(x)
    assert pooled_formats == ['contiguous', 'channels_last']
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=0, atol=0)


def test_channels_last_max_pool_plain_with_gradients_and_traced(
        pooled_formats):
    """Training, a jit trace and a channels-last input see the plain pool
    (its gradients are those of nn.MaxPool2d)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 8).relu().requires_grad_()
    pool, plain = ChannelsLastMaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)
    grad = torch.randn(2, 6, 5, 4)
    expected = torch.autograd.grad(plain(x), x, grad)[0]
    expected_values = plain(x).detach()
    pooled_formats.clear()
    torch.testing.assert_close(
        torch.autograd.grad(pool(x), x, grad)[0], expected, rtol=0, atol=0)
    with torch.no_grad():
        traced = torch.jit.trace(pool, x.detach(), check_trace=False)
        torch.testing.assert_close(traced(x), expected_values)
        pool(x.detach().to(memory_format=torch.channels_last))
    assert pooled_formats == ['contiguous', 'contiguous', 'channels_last']
