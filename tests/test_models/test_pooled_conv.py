import pytest
import torch
import torch.nn.functional as F

from mmcot.models.layers import SplitAttentionConv
from mmcot.models.layers.pooled_conv import conv1x1_pooled

from .batch_norms import randomize_batch_norms


@pytest.mark.parametrize('batch', [0, 1, 5])
@pytest.mark.parametrize('channels_last', [False, True])
def test_conv1x1_pooled_is_the_conv(batch, channels_last):
    torch.manual_seed(0)
    x = torch.randn(batch, 12, 1, 1, requires_grad=True)
    weight = torch.randn(6, 12, 1, 1, requires_grad=True)
    bias = torch.randn(6, requires_grad=True)
    inputs = x.to(memory_format=torch.channels_last) if channels_last else x
    out = conv1x1_pooled(inputs, weight, bias)
    expected = F.conv2d(inputs, weight, bias)
    assert out.shape == (batch, 6, 1, 1)
    torch.testing.assert_close(out, expected)
    if batch:
        grads = torch.autograd.grad(out.square().sum(), (x, weight, bias))
        expected_grads = torch.autograd.grad(expected.square().sum(),
                                             (x, weight, bias))
        for grad, expected_grad in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected_grad)


def test_conv1x1_pooled_grouped_or_spatial_is_the_conv():
    torch.manual_seed(0)
    weight = torch.randn(6, 4, 1, 1)
    grouped = torch.randn(2, 12, 1, 1)
    torch.testing.assert_close(conv1x1_pooled(grouped, weight, groups=3),
                               F.conv2d(grouped, weight, groups=3))
    spatial = torch.randn(2, 4, 3, 2)
    torch.testing.assert_close(conv1x1_pooled(spatial, weight),
                               F.conv2d(spatial, weight))


@pytest.mark.parametrize('groups', [1, 2])
def test_split_attention_gate_matches_equations(groups):
    """The gate written out with the modules' own convs."""
    torch.manual_seed(0)
    layer = randomize_batch_norms(SplitAttentionConv(32, 32,
                                                     groups=groups)).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        y = layer.act0(layer.bn0(layer.conv(x)))
        gate = layer.fc2(
            layer.act1(layer.bn1(layer.fc1(y.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(layer(x), y * gate.sigmoid())
