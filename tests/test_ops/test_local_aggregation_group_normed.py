import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmcot.ops import (LocalAggregation, ext_available, ext_with_cuda,
                       group_norm_weights, local_aggregation_group_normed,
                       local_aggregation_group_normed_decomposed,
                       local_aggregation_group_normed_reference,
                       local_aggregation_reference)

requires_ext = pytest.mark.skipif(
    not ext_available(), reason='mmcot._ext is not built')
requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ext_with_cuda()),
    reason='needs a GPU and a CUDA build of mmcot._ext')
DEVICES = ['cpu', pytest.param('cuda', marks=requires_cuda)]

# the CPU kernels' forward paths: a centred window on planes of >= 512
# positions (tiled by 2048), on planes of <= 64 with 8 channels a group,
# the segments otherwise; stride, dilation, heads and affine samples M
# (n, c, h, w, heads, groups, samples, k, stride, dilation)
CASES = [
    (2, 16, 8, 8, 1, 2, 1, 3, 1, 1),
    (2, 64, 7, 7, 1, 8, 2, 3, 1, 1),
    (4, 32, 56, 56, 1, 4, 2, 3, 1, 1),
    (1, 16, 48, 50, 2, 2, 1, 3, 1, 2),
    (2, 24, 9, 11, 3, 4, 2, 3, 2, 2),
    (3, 12, 10, 9, 2, 3, 3, 5, 1, 2),
    (2, 8, 6, 7, 1, 8, 1, 1, 1, 1),
]


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(n, c, h, w, heads, groups, samples, k, s, d, dtype='float64',
              device='cpu', offset=0.0, seed=0):
    """Values, unnormalised weights (scaled and offset, as an embed conv's
    output is), GroupNorm's affine and the window."""
    p = d * (k - 1) // 2
    g = torch.Generator().manual_seed(seed)
    ho, wo = out_size(h, k, s, p, d), out_size(w, k, s, p, d)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    a = torch.randn(n, heads, groups, k * k, ho, wo, generator=g,
                    dtype=torch.float64) * 3 + 1 + offset
    gamma = torch.randn(samples, heads, groups, k * k, generator=g,
                        dtype=torch.float64)
    beta = torch.randn(samples, heads, groups, k * k, generator=g,
                       dtype=torch.float64)
    dtype = getattr(torch, dtype)
    tensors = [t.to(device, dtype) for t in (x, a, gamma, beta)]
    return tensors, dict(kernel_size=k, stride=s, padding=p, dilation=d)


def channels_last(x, a):
    """Channels-last values and pixel-major weights, as a channels-last
    model's convs give them."""
    n, heads, groups, taps, h, w = a.shape
    a = a.reshape(n, -1, h, w).contiguous(memory_format=torch.channels_last)
    return (x.contiguous(memory_format=torch.channels_last),
            a.view(n, heads, groups, taps, h, w))


def loop_group_norm(a, gamma, beta, eps):
    """GroupNorm of each (sample, head, group) over its taps and positions,
    one group at a time: an oracle independent of F.group_norm's reshape."""
    out = torch.empty_like(a)
    samples = gamma.shape[0]
    for n in range(a.shape[0]):
        for head in range(a.shape[1]):
            for g in range(a.shape[2]):
                block = a[n, head, g]
                mean = block.mean()
                var = ((block - mean)**2).mean()
                scale = gamma[n % samples, head, g][:, None, None]
                shift = beta[n % samples, head, g][:, None, None]
                out[n, head, g] = (block - mean) / torch.sqrt(var + eps) * \
                    scale + shift
    return out


def test_group_norm_weights_is_groupnorm_per_weight_group():
    (x, a, gamma, beta), _ = make_case(*CASES[4])
    torch.testing.assert_close(
        group_norm_weights(a, gamma, beta, 1e-5),
        loop_group_norm(a, gamma, beta, 1e-5))


def test_decomposition_matches_reference():
    (x, a, gamma, beta), kw = make_case(*CASES[4])
    torch.testing.assert_close(
        local_aggregation_group_normed_decomposed(x, a, gamma, beta, 1e-5,
                                                  **kw),
        local_aggregation_reference(x, loop_group_norm(a, gamma, beta, 1e-5),
                                    **kw))


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype,tol', [('float64', 1e-12),
                                       ('float32', 1e-5)])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('case', CASES)
def test_operator_matches_reference(device, dtype, tol, layout, case):
    (x, a, gamma, beta), kw = make_case(*case, dtype=dtype, device=device)
    expected = local_aggregation_reference(
        x.double(), loop_group_norm(a.double(), gamma.double(), beta.double(),
                                    1e-5), **kw)
    if layout == 'channels_last':
        x, a = channels_last(x, a)
    with torch.no_grad():
        out = local_aggregation_group_normed(x, a, gamma, beta, 1e-5, **kw)
    assert out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last
                             if layout == 'channels_last' else
                             torch.contiguous_format)
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)


@requires_ext
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('offset', [1e3, -3e4])
def test_statistics_hold_far_from_zero(layout, offset):
    """Weights whose mean lies thousands of standard deviations from zero
    (where sums of squares cancel): float32 results at least as close to
    float64 as those of PyTorch's float32 GroupNorm."""
    (x, a, gamma, beta), kw = make_case(2, 16, 30, 30, 1, 2, 1, 3, 1, 1,
                                        dtype='float32', offset=offset)
    expected = local_aggregation_reference(
        x.double(), loop_group_norm(a.double(), gamma.double(), beta.double(),
                                    1e-5), **kw)
    torch_float32 = local_aggregation_reference(
        x, group_norm_weights(a, gamma, beta, 1e-5), **kw)
    if layout == 'channels_last':
        x, a = channels_last(x, a)
    with torch.no_grad():
        out = local_aggregation_group_normed(x, a, gamma, beta, 1e-5, **kw)

    def error(result):
        return float((result.double() - expected).abs().max() /
                     expected.abs().max())

    assert error(out) <= error(torch_float32)
    assert error(out) < 1e-3


@requires_ext
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_constant_group_gives_the_shift(layout):
    """A group of equal weights has variance 0: it normalises to gn_bias
    (rstd = 1 / sqrt(eps) times 0), not to NaN."""
    (x, a, gamma, beta), kw = make_case(2, 16, 9, 9, 1, 2, 1, 3, 1, 1)
    a[:, :, 1] = 7.0
    expected = local_aggregation_reference(
        x, loop_group_norm(a, gamma, beta, 1e-5), **kw)
    if layout == 'channels_last':
        x, a = channels_last(x, a)
    with torch.no_grad():
        out = local_aggregation_group_normed(x, a, gamma, beta, 1e-5, **kw)
    torch.testing.assert_close(out, expected)


class OpLog(TorchDispatchMode):
    """The names of the operators a call dispatches."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__.split('.')[0])
        return func(*args, **(kwargs or {}))


@requires_ext
def test_one_operator_without_grad_decomposition_with():
    """Without gradients one fused operator runs; with them GroupNorm and
    the aggregation, differentiable and equal to the reference."""
    (x, a, gamma, beta), kw = make_case(*CASES[0])
    with torch.no_grad(), OpLog() as log:
        fused = local_aggregation_group_normed(x, a, gamma, beta, 1e-5, **kw)
    assert 'local_aggregation_group_normed' in log.names
    assert 'native_group_norm' not in log.names
    for t in (x, a, gamma, beta):
        t.requires_grad_()
    with OpLog() as log:
        out = local_aggregation_group_normed(x, a, gamma, beta, 1e-5, **kw)
    assert {'native_group_norm', 'local_aggregation'} <= log.names
    assert 'local_aggregation_group_normed' not in log.names
    torch.testing.assert_close(out, fused, rtol=1e-12, atol=1e-12)
    expected = local_aggregation_group_normed_reference(
        x, a, gamma, beta, 1e-5, **kw)
    grads = torch.autograd.grad(out.sum(), (x, a, gamma, beta))
    expected_grads = torch.autograd.grad(expected.sum(), (x, a, gamma, beta))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@requires_ext
def test_gradcheck():
    (x, a, gamma, beta), kw = make_case(2, 8, 5, 6, 1, 2, 2, 3, 1, 1)
    for t in (x, a, gamma, beta):
        t.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *t: local_aggregation_group_normed(*t, 1e-5, **kw),
        (x, a, gamma, beta))


@requires_ext
def test_operator_refuses_gradients():
    (x, a, gamma, beta), kw = make_case(*CASES[0])
    a.requires_grad_()
    window = [[v, v] for v in kw.values()]
    with pytest.raises(RuntimeError, match='has no gradient'):
        torch.ops.mmcot.local_aggregation_group_normed(x, a, gamma, beta,
                                                       1e-5, *window)


@requires_ext
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_meta_kernel_gives_the_kernel_strides(layout):
    from torch._subclasses.fake_tensor import FakeTensorMode
    (x, a, gamma, beta), kw = make_case(*CASES[0], dtype='float32')
    if layout == 'channels_last':
        x, a = channels_last(x, a)
    window = [[v, v] for v in kw.values()]

    def run(*t):
        return torch.ops.mmcot.local_aggregation_group_normed(
            *t, 1e-5, *window)

    real = run(x, a, gamma, beta)
    with FakeTensorMode() as mode:
        fake = run(*(mode.from_tensor(t) for t in (x, a, gamma, beta)))
    assert (fake.shape, fake.stride()) == (real.shape, real.stride())


@requires_ext
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_compiled_equals_eager(layout):
    """torch.compile(fullgraph=True) keeps the operator and its result; the
    convs before it may hand it channels-last tensors (it takes any
    strides)."""
    torch._dynamo.reset()
    (x, a, gamma, beta), kw = make_case(*CASES[2], dtype='float32')
    if layout == 'channels_last':
        x, a = channels_last(x, a)

    def f(x, a):
        return F.relu(
            local_aggregation_group_normed(x * 2, a, gamma, beta, 1e-5, **kw))

    with torch.no_grad():
        compiled = torch.compile(f, fullgraph=True)(x, a)
        eager = f(x, a)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


@requires_ext
def test_empty_batch():
    (x, a, gamma, beta), kw = make_case(*CASES[0])
    with torch.no_grad():
        out = local_aggregation_group_normed(x[:0], a[:0], gamma, beta, 1e-5,
                                             **kw)
    assert out.shape == (0, 16, 8, 8)


def test_cpu_autocast():
    """Under autocast the values and weights arrive in bfloat16 (conv
    outputs) and the affine in float32: GroupNorm runs as autocast runs it,
    the aggregation as local_aggregation does (float32 on the CPU), within
    bfloat16's precision of the float32 result."""
    (x, a, gamma, beta), kw = make_case(*CASES[0], dtype='float32')
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = local_aggregation_group_normed(x.bfloat16(), a.bfloat16(),
                                             gamma, beta, 1e-5, **kw)
    assert out.dtype == torch.float32
    expected = local_aggregation_reference(
        x.bfloat16().float(),
        loop_group_norm(a.bfloat16().float(), gamma, beta, 1e-5), **kw)
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=4e-2)


def good():
    (x, a, gamma, beta), _ = make_case(4, 8, 6, 6, 1, 4, 2, 3, 1, 1,
                                       dtype='float32')
    return x, a, gamma, beta


@pytest.mark.parametrize('make,eps,error,match', [
    (lambda x, a, g, b: (x, a, g[:, :, :2], b[:, :, :2]), 1e-5, ValueError,
     r'gn_weight must have shape \(M, heads, G, K\*K\) = \(M, 1, 4, 9\)'),
    (lambda x, a, g, b: (x, a, g.repeat(3, 1, 1, 1), b.repeat(3, 1, 1, 1)),
     1e-5, ValueError, r'M dividing the batch size 4, got \(6, 1, 4, 9\)'),
    (lambda x, a, g, b: (x, a, g, b[:1]), 1e-5, ValueError,
     r'gn_bias must have the shape of gn_weight'),
    (lambda x, a, g, b: (x, a, g.double(), b), 1e-5, TypeError,
     r'gn_weight must be of the weight\'s dtype'),
    (lambda x, a, g, b: (x, a, g, b.numpy()), 1e-5, TypeError,
     r'gn_bias must be a torch.Tensor'),
    (lambda x, a, g, b: (x, a, g, b), 0.0, ValueError,
     r'eps must be a positive number, got 0.0'),
    (lambda x, a, g, b: (x, a[..., :3], g, b), 1e-5, ValueError,
     r'weight must have shape'),
])
def test_bad_input(make, eps, error, match):
    x, a, gamma, beta = make(*good())
    with pytest.raises(error, match=match):
        local_aggregation_group_normed(x, a, gamma, beta, eps, 3, padding=1)


def test_module_with_a_group_norm():
    """LocalAggregation(..)(x, a, norm): the GroupNorm's affine split into
    M = channels / (heads*G*K*K) samples' rows, as a CoXt layer's."""
    (x, a, gamma, beta), kw = make_case(4, 8, 6, 6, 1, 4, 2, 3, 1, 1)
    norm = torch.nn.GroupNorm(8, 72).double()
    with torch.no_grad():
        norm.weight.copy_(gamma.flatten())
        norm.bias.copy_(beta.flatten())
        out = LocalAggregation(3, padding=1)(x, a, norm)
    torch.testing.assert_close(
        out, local_aggregation_reference(
            x, loop_group_norm(a, gamma, beta, norm.eps), **kw))
    with pytest.raises(ValueError, match='norm must have M\\*heads'):
        LocalAggregation(3, padding=1)(x, a, torch.nn.GroupNorm(3, 27))
    with pytest.raises(ValueError, match='affine GroupNorm'):
        LocalAggregation(3, padding=1)(
            x, a, torch.nn.GroupNorm(8, 72, affine=False))
    with pytest.raises(TypeError, match='norm must be an nn.GroupNorm'):
        LocalAggregation(3, padding=1)(x, a, torch.nn.BatchNorm2d(72))


@pytest.mark.parametrize('groups', [1, 2, 72])
def test_module_refuses_a_group_norm_of_other_groups(groups):
    """A GroupNorm of 72 channels but not 8 groups (one a weight group)
    would normalise other sets of weights than the op does."""
    (x, a, _, _), _ = make_case(4, 8, 6, 6, 1, 4, 2, 3, 1, 1)
    norm = torch.nn.GroupNorm(groups, 72).double()
    with pytest.raises(ValueError, match='one group per weight group, 8 '
                       f'groups .* got num_groups={groups}'):
        LocalAggregation(3, padding=1)(x, a, norm)


def test_exported_helpers_check_their_arguments():
    x, a, gamma, beta = good()
    with pytest.raises(ValueError, match='gn_weight must have shape'):
        group_norm_weights(a, gamma[:, :, :2], beta[:, :, :2], 1e-5)
    with pytest.raises(ValueError, match='weight must be a 6-D'):
        group_norm_weights(a[0], gamma, beta, 1e-5)
    with pytest.raises(TypeError, match='gn_weight must be a floating'):
        group_norm_weights(a, gamma.int(), beta, 1e-5)
    with pytest.raises(ValueError, match='eps must be a positive'):
        local_aggregation_group_normed_decomposed(x, a, gamma, beta, -1.0, 3,
                                                  padding=1)
    with pytest.raises(ValueError, match='kernel_size'):
        local_aggregation_group_normed_decomposed(x, a, gamma, beta, 1e-5,
                                                  2.5)
