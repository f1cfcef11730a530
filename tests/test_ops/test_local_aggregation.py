import itertools
import os
import os.path as osp
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import mmcot.ops.ext_loader as ext_loader
from mmcot.ops import (LocalAggregation, ext_available, ext_with_cuda,
                       local_aggregation, local_aggregation_decomposed,
                       local_aggregation_reference)

CSRC = osp.join(osp.dirname(ext_loader.__file__), 'csrc')
requires_ext = pytest.mark.skipif(
    not ext_available(), reason='mmcot._ext is not built')
requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and ext_with_cuda()),
    reason='needs a GPU and a CUDA build of mmcot._ext')
DEVICES = ['cpu', pytest.param('cuda', marks=requires_cuda)]


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


@torch.no_grad()
def loop_aggregation(input, weight, k, s, p, d):
    """The defining formula, one output element at a time (an independent
    oracle for the unfold reference); ints or (h, w) pairs. Without
    autograd: tens of thousands of in-place updates would chain as many
    graph nodes (a segmentation fault in one GPU node's run)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (k, s, p, d))
    n, c, h, w = input.shape
    heads, groups = weight.shape[1:3]
    ho, wo = weight.shape[-2:]
    out = input.new_zeros(n, heads * c, ho, wo)
    for b, hd, ch, y, x in itertools.product(
            range(n), range(heads), range(c), range(ho), range(wo)):
        for i, j in itertools.product(range(kh), range(kw)):
            yi, xi = y * sh - ph + i * dh, x * sw - pw + j * dw
            if 0 <= yi < h and 0 <= xi < w:
                out[b, hd * c + ch, y, x] += (
                    weight[b, hd, ch % groups, i * kw + j, y, x] *
                    input[b, ch, yi, xi])
    return out


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(n, c, h, w, heads, groups, k, s, d, dtype, device, seed=0):
    p = d * (k - 1) // 2
    g = torch.Generator().manual_seed(seed)
    ho, wo = out_size(h, k, s, p, d), out_size(w, k, s, p, d)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    a = torch.randn(n, heads, groups, k * k, ho, wo, generator=g,
                    dtype=torch.float64)
    x = x.to(device, dtype).requires_grad_()
    a = a.to(device, dtype).requires_grad_()
    return x, a, dict(kernel_size=k, stride=s, padding=p, dilation=d)


def test_reference_matches_definition():
    x, a, kw = make_case(2, 6, 5, 7, 2, 3, 3, 2, 1, torch.float64, 'cpu')
    expected = loop_aggregation(x, a, 3, 2, 1, 1)
    torch.testing.assert_close(
        local_aggregation_reference(x, a, **kw), expected, rtol=0, atol=1e-12)
    # channel c uses weight group c % G, not c // (C / G)
    x, a, kw = make_case(1, 4, 4, 4, 1, 2, 3, 1, 1, torch.float64, 'cpu')
    a = a.detach().clone()
    a[:, :, 1] = 0
    out = local_aggregation_reference(x, a, **kw)
    assert out[0, 1].abs().max() == 0 and out[0, 3].abs().max() == 0
    assert out[0, 0].abs().max() > 0 and out[0, 2].abs().max() > 0


# (n, c, h, w, heads, groups) x (k, stride, dilation): odd sizes, K 1/3/5/7.
# the last with 8 channels per weight group, as CoT layers (the CUDA
# kernels' specialised path)
SHAPES = [(1, 8, 9, 7, 1, 2), (2, 12, 6, 11, 2, 3), (3, 4, 5, 5, 1, 4),
          (2, 16, 13, 8, 2, 8), (2, 16, 9, 10, 2, 2)]
WINDOWS = [(1, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 2), (5, 2, 2), (7, 1, 1),
           (7, 2, 1)]


def assert_matches_reference(out, inputs, ref, ref_inputs, tol):
    """``out`` and its gradients with respect to ``inputs`` within ``tol``
    (relative to the largest value, at least 1) of ``ref`` and its gradients
    with respect to ``ref_inputs``, for one random output gradient; returns
    the gradients of ``out``."""
    grad = torch.randn_like(ref)
    grads = torch.autograd.grad(out, inputs, grad)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad)
    for got, want in zip((out, *grads), (ref, *ref_grads)):
        scale = want.abs().max().clamp_min(1)
        assert (got - want).abs().max() <= tol * scale
    return grads


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('window', WINDOWS)
def test_kernel_matches_reference(device, dtype, tol, shape, window):
    x, a, kw = make_case(*shape, *window, dtype, device)
    assert_matches_reference(local_aggregation(x, a, **kw), (x, a),
                             local_aggregation_reference(x, a, **kw), (x, a),
                             tol)


# (kernel_size, stride, padding, dilation) reaching both plans of the CPU
# kernel: the whole-plane plan (stride 1, output as wide as the input: a tap
# shifts the flattened plane) and the per-row plan (everything else)
WINDOW_PLANS = [
    ((3, 3), (1, 1), (1, 1), (1, 1)),  # same padding (CoTNet)
    ((3, 3), (1, 1), (0, 1), (1, 1)),  # output lower than the input
    ((3, 3), (1, 1), (2, 1), (1, 1)),  # output higher than the input
    ((5, 3), (1, 1), (2, 2), (1, 2)),  # non-square window and dilation
    ((3, 3), (1, 1), (0, 0), (1, 1)),  # no padding: a smaller output
    ((3, 3), (1, 1), (3, 3), (1, 1)),  # padding wider than the window
    ((1, 3), (2, 1), (0, 1), (1, 1)),  # non-square window and stride
    ((3, 5), (1, 3), (1, 2), (2, 1)),  # non-square everything
    ((3, 3), (2, 2), (2, 0), (2, 1)),  # stride 2, uneven padding
    ((3, 3), (1, 1), (2, 2), (2, 2)),  # dilated same padding (CoTNet's)
    ((3, 3), (1, 1), (5, 5), (5, 5)),  # dilated past the plane's edges
]
# (n, c, h, w, heads, groups)
PLAN_SHAPES = [(2, 6, 7, 9, 2, 3), (1, 4, 5, 4, 1, 4)]


def whole_plane_plan(shape, window):
    width = shape[3]
    (_, kw), stride, (_, pw), (_, dw) = window
    return stride == (1, 1) and out_size(width, kw, 1, pw, dw) == width


def make_window_case(shape, window, dtype, device, seed=0):
    n, c, h, w, heads, groups = shape
    kernel_size, stride, padding, dilation = window
    out_h, out_w = (out_size(size, *geometry) for size, geometry in zip(
        (h, w), zip(kernel_size, stride, padding, dilation)))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    a = torch.randn(n, heads, groups, kernel_size[0] * kernel_size[1], out_h,
                    out_w, generator=g, dtype=torch.float64)
    return (x.to(device, dtype).requires_grad_(),
            a.to(device, dtype).requires_grad_(),
            dict(kernel_size=kernel_size, stride=stride, padding=padding,
                 dilation=dilation))


def test_window_plans_cover_both_kernel_plans():
    plans = {
        whole_plane_plan(shape, window)
        for shape in PLAN_SHAPES for window in WINDOW_PLANS
    }
    assert plans == {True, False}


@pytest.mark.parametrize('shape', PLAN_SHAPES)
@pytest.mark.parametrize('window', WINDOW_PLANS)
def test_reference_matches_definition_over_windows(shape, window):
    x, a, kw = make_window_case(shape, window, torch.float64, 'cpu')
    torch.testing.assert_close(
        local_aggregation_reference(x, a, **kw),
        loop_aggregation(x, a, *kw.values()), rtol=0, atol=1e-12)


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('shape', PLAN_SHAPES)
@pytest.mark.parametrize('window', WINDOW_PLANS)
def test_kernel_matches_reference_over_windows(device, dtype, tol, shape,
                                               window):
    """Forward and both gradients of the kernels, on both plans."""
    x, a, kw = make_window_case(shape, window, dtype, device)
    assert_matches_reference(local_aggregation(x, a, **kw), (x, a),
                             local_aggregation_reference(x, a, **kw), (x, a),
                             tol)


# the CPU kernels visit output positions in tiles of this many
# (kTilePositions): a plane of several tiles, whose boundaries fall inside
# rows, on every window plan
CPU_TILE = 2048


@requires_ext
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('window', WINDOW_PLANS)
def test_cpu_kernel_matches_reference_over_tiles(dtype, tol, window):
    x, a, kw = make_window_case((1, 4, 70, 131, 2, 2), window, dtype, 'cpu')
    assert a.shape[-2] * a.shape[-1] > CPU_TILE
    assert_matches_reference(local_aggregation(x, a, **kw), (x, a),
                             local_aggregation_reference(x, a, **kw), (x, a),
                             tol)


# a 3 x 3 window centred on each position, 8 channels a weight group (a CoT
# layer's): the CPU group kernels sum a group's 8 channels at once on planes
# of a vector (8 float, 4 double) or more (the backward's with one head), in
# tiles: one at each end of the plane, copied with zero padding, and between
# them tiles of up to CPU_TILE read in place; rows narrower than a vector
# make a vector of positions cross several row ends. With two heads the
# backward sums each gradient element channel by channel on planes of at
# least CPU_CENTRED_MIN_PLANE positions (kMinCentredPlane), with the
# segment kernels below; planes under a vector take the segment kernels.
CENTRED_WINDOWS = [((3, 3), (1, 1), (d, d), (d, d)) for d in (1, 2, 5)]
CPU_CENTRED_MIN_PLANE = 512
# (n, c, h, w, heads, groups), C = 8 G
CENTRED_SHAPES = [(1, 16, 70, 131, 2, 2), (2, 24, 23, 24, 1, 3),
                  (1, 16, 50, 90, 1, 2), (1, 16, 4, 130, 2, 2),
                  (1, 16, 130, 4, 1, 2), (1, 16, 16, 32, 1, 2)]
SMALL_CENTRED_SHAPES = [(2, 16, 7, 7, 2, 2), (1, 24, 8, 8, 1, 3),
                        (1, 16, 1, 9, 1, 2), (1, 16, 9, 1, 1, 2),
                        (1, 16, 2, 4, 1, 2), (1, 16, 2, 3, 2, 2),
                        (1, 16, 2, 2, 1, 2)]
BETWEEN_SHAPES = [(1, 16, 17, 30, 1, 2), (1, 24, 14, 14, 1, 3),
                  (1, 16, 5, 13, 2, 2)]


@requires_ext
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize(
    'shape', CENTRED_SHAPES + SMALL_CENTRED_SHAPES + BETWEEN_SHAPES)
@pytest.mark.parametrize('window', CENTRED_WINDOWS)
def test_cpu_kernel_matches_reference_on_centred_windows(
        dtype, tol, shape, window):
    x, a, kw = make_window_case(shape, window, dtype, 'cpu')
    assert x.shape[1] == 8 * a.shape[2] and a.shape[-2:] == x.shape[-2:]
    plane = x.shape[-2] * x.shape[-1]
    assert (plane >= CPU_CENTRED_MIN_PLANE) == (shape in CENTRED_SHAPES)
    assert_matches_reference(local_aggregation(x, a, **kw), (x, a),
                             local_aggregation_reference(x, a, **kw), (x, a),
                             tol)


def outside_image_taps(height, width, padding, dilation):
    """(tap, y, x) index tensors of the taps of a 3 x 3, stride 1 window
    with this padding and dilation (both equal along the two axes) that read
    outside a height x width image, over the output positions (y, x)."""
    taps, ys, xs = [], [], []
    out_h, out_w = (size + 2 * padding - 2 * dilation
                    for size in (height, width))
    for i in range(3):
        for j in range(3):
            for y in range(out_h):
                for x in range(out_w):
                    inside = (0 <= y + i * dilation - padding < height
                              and 0 <= x + j * dilation - padding < width)
                    if not inside:
                        taps.append(i * 3 + j)
                        ys.append(y)
                        xs.append(x)
    return torch.tensor(taps), torch.tensor(ys), torch.tensor(xs)


def outside_tap_case(size, padding, dilation, dtype, device, layout):
    """Input, weights and window of the OUTSIDE_TAP_CASES tests: one sample
    of 16 channels in 2 weight groups, one head, a 3 x 3 window of stride 1
    with this padding and dilation (both axes) on a ``size`` image; in
    channels-last memory (``layout``), 64 channels in 8 groups (the
    channels-last kernels' vectors of groups)."""
    h, w = size
    c, groups = (64, 8) if layout == 'channels_last' else (16, 2)
    x, a, kw = make_window_case((1, c, h, w, 1, groups),
                                ((3, 3), (1, 1), (padding, padding),
                                 (dilation, dilation)), dtype, device)
    if layout == 'channels_last':
        x, a = channels_last(x, a)
    return x, a, kw


def put_infs_at_row_ends(t):
    """Write infs into every channel of (N, C, H, W) ``t`` where a window
    flattened over the plane would wrap into the next row: the first column
    of row 3, the last of row 4 (-inf), and the last corner."""
    t[:, :, 3, 0] = float('inf')
    t[:, :, 4, -1] = float('-inf')
    t[:, :, -1, -1] = float('inf')


#: the memory layouts of the inputs: contiguous, or channels-last values
#: with pixel-major weights (the CPU's channels-last kernels)
LAYOUTS = ['contiguous', 'channels_last']

# (size, padding, dilation): a centred window on a large plane, on a small
# plane (twice), and a window the segment kernels take
OUTSIDE_TAP_CASES = [((23, 24), 1, 1), ((7, 9), 1, 1), ((7, 9), 2, 2),
                     ((7, 9), 2, 1)]


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('size,padding,dilation', OUTSIDE_TAP_CASES)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_taps_outside_the_image_add_nothing(device, dtype, size, padding,
                                            dilation, layout):
    """A weight, or an output gradient, at a tap that reads outside the
    image adds no term, even when it is inf (zero padding would make it
    NaN): the forward equals the reference with those weights zeroed, and
    the weight gradient there is 0, on every CPU kernel and on CUDA."""
    x, a, kw = outside_tap_case(size, padding, dilation, dtype, device,
                                layout)
    x, a = x.detach(), a.detach()
    taps, ys, xs = outside_image_taps(*size, padding, dilation)
    finite = a.clone()
    finite[:, :, :, taps, ys, xs] = 0
    poisoned = a.clone()
    poisoned[:, :, :, taps, ys, xs] = float('inf')
    out = local_aggregation(x, poisoned, **kw)
    torch.testing.assert_close(out, local_aggregation_reference(x, finite,
                                                                **kw))

    window = [list(v) for v in kw.values()]
    grad = torch.randn(out.shape, dtype=x.dtype, device=device)
    grad[:, :, 0, 1] = float('inf')  # a first-row output: window row 0 out
    grad_input, grad_weight = torch.ops.mmcot.local_aggregation_backward(
        grad, x, a, *window, True, True)
    outside = grad_weight[:, :, :, taps, ys, xs]
    assert torch.equal(outside, torch.zeros_like(outside))
    # each gradient alone equals the one computed with the other
    only_input = torch.ops.mmcot.local_aggregation_backward(
        grad, x, a, *window, True, False)[0]
    only_weight = torch.ops.mmcot.local_aggregation_backward(
        grad, x, a, *window, False, True)[1]
    for alone, both in ((only_input, grad_input), (only_weight, grad_weight)):
        torch.testing.assert_close(alone, both, rtol=0, atol=0,
                                   equal_nan=True)


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('size,padding,dilation', OUTSIDE_TAP_CASES)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_an_inf_input_reaches_only_the_windows_reading_it(
        device, dtype, size, padding, dilation, layout):
    """Inf values at the first and last column of a row (where a flattened
    window would wrap into the next row) and in a corner: the outputs whose
    windows read them are +-inf, all others equal the reference's."""
    x, a, kw = outside_tap_case(size, padding, dilation, dtype, device,
                                layout)
    x, a = x.detach().clone(), a.detach()
    put_infs_at_row_ends(x)
    out = local_aggregation(x, a, **kw)
    expected = local_aggregation_reference(x, a, **kw)
    assert out.isinf().any() and not out.isinf().all()
    torch.testing.assert_close(out, expected, equal_nan=True)


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('size,padding,dilation', OUTSIDE_TAP_CASES)
@pytest.mark.parametrize('layout', LAYOUTS)
def test_an_inf_output_gradient_reaches_only_the_inputs_it_weighs(
        device, dtype, size, padding, dilation, layout):
    """Inf output gradients at the first and last column of a row and in a
    corner: the input gradients they reach are inf or NaN, all others
    equal the reference's."""
    x, a, kw = outside_tap_case(size, padding, dilation, dtype, device,
                                layout)
    grad = torch.randn(local_aggregation(x, a, **kw).shape,
                       dtype=dtype,
                       device=device)
    put_infs_at_row_ends(grad)
    got, = torch.autograd.grad(local_aggregation(x, a, **kw), x, grad)
    expected, = torch.autograd.grad(local_aggregation_reference(x, a, **kw),
                                    x, grad)
    assert got.isfinite().any() and not got.isfinite().all()
    torch.testing.assert_close(got, expected, equal_nan=True)


def channels_last(x, a, batch_stride=None):
    """``x`` in channels-last memory and ``a`` pixel-major: what a conv
    and a GroupNorm give in a channels-last model. ``batch_stride``
    replaces the stride of a batch of one (any stride is valid there)."""
    n, heads, groups, taps, out_h, out_w = a.shape
    xc = x.detach().contiguous(memory_format=torch.channels_last)
    if batch_stride is not None:
        assert n == 1
        xc = xc.as_strided(xc.shape, (batch_stride, ) + xc.stride()[1:])
    ac = a.detach().reshape(n, -1, out_h, out_w).contiguous(
        memory_format=torch.channels_last).view(a.shape)
    assert not xc.is_contiguous() and not ac.is_contiguous()
    return xc.requires_grad_(), ac.requires_grad_()


# (n, c, h, w, heads, groups): C = 8 G with G a multiple of the channels-last
# kernel's vector of groups (8 float, 4 double), one with G = 12 (a block and
# a remainder in float), and C != 8 G (no blocks)
CHANNELS_LAST_SHAPES = [(2, 64, 5, 6, 2, 8), (1, 96, 4, 5, 1, 12),
                        (2, 6, 7, 9, 2, 3)]


@requires_ext
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('shape', CHANNELS_LAST_SHAPES)
@pytest.mark.parametrize('window', WINDOW_PLANS)
def test_channels_last_matches_reference(dtype, tol, shape, window):
    """Channels-last values and pixel-major weights (the CPU kernels of that
    layout): the forward and both gradients equal the reference's, the
    output and the input gradient are channels-last as the input is, the
    weight gradient pixel-major as the weights are."""
    x, a, kw = make_window_case(shape, window, dtype, 'cpu')
    xc, ac = channels_last(x, a)
    out = local_aggregation(xc, ac, **kw)
    gx, ga = assert_matches_reference(out, (xc, ac),
                                      local_aggregation_reference(x, a, **kw),
                                      (x, a), tol)
    channels_last_results = (out, gx) if min(out.shape[2:]) > 1 else (gx, )
    for result in channels_last_results:
        assert result.is_contiguous(memory_format=torch.channels_last)
        assert not result.is_contiguous()
    assert ga.permute(0, 4, 5, 1, 2, 3).is_contiguous()  # pixel-major


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
def test_channels_last_batch_of_one_with_any_batch_stride(device):
    """A batch of one in channels-last memory whose batch stride is not the
    image size (what ``view`` gives) is channels-last all the same."""
    x, a, kw = make_case(1, 16, 5, 6, 1, 2, 3, 1, 1, torch.float64, device)
    xc, ac = channels_last(x, a, batch_stride=16)
    out = local_aggregation(xc, ac, **kw)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, local_aggregation_reference(x, a, **kw))


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last',
                                    'batch_stride'])
def test_meta_kernels_give_the_kernels_strides(device, layout):
    """What torch.compile and torch.export trace with (the Meta kernels,
    through FakeTensor) has the shapes and strides the kernels return, for
    the forward and both gradients."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    x, a, kw = make_case(1, 16, 5, 6, 1, 2, 3, 1, 1, torch.float32, device)
    x, a = x.detach(), a.detach()
    if layout != 'contiguous':
        x, a = channels_last(
            x, a, batch_stride=16 if layout == 'batch_stride' else None)
        x, a = x.detach(), a.detach()
    window = [[v, v] for v in kw.values()]
    grad = torch.randn(1, 16, 5, 6, device=device)

    def run(x, a, grad):
        out = torch.ops.mmcot.local_aggregation(x, a, *window)
        grads = torch.ops.mmcot.local_aggregation_backward(
            grad, x, a, *window, True, True)
        return (out, *grads)

    real = run(x, a, grad)
    with FakeTensorMode() as mode:
        fake = run(*(mode.from_tensor(t) for t in (x, a, grad)))
    for r, f in zip(real, fake):
        assert (f.shape, f.stride()) == (r.shape, r.stride())


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('window', WINDOWS)
def test_decomposition_matches_definition(shape, window):
    """The slice decomposition that ONNX export uses, forward and both
    gradients, against the loop definition and the reference."""
    x, a, kw = make_case(*shape, *window, torch.float64, 'cpu')
    out = local_aggregation_decomposed(x, a, **kw)
    k, s, p, d = (kw[key] for key in ('kernel_size', 'stride', 'padding',
                                      'dilation'))
    torch.testing.assert_close(
        out, loop_aggregation(x, a, k, s, p, d), rtol=0, atol=1e-12)
    ref = local_aggregation_reference(x, a, **kw)
    grad = torch.randn_like(ref)
    for got, want in zip(torch.autograd.grad(out, (x, a), grad),
                         torch.autograd.grad(ref, (x, a), grad)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('kernel_size,stride,padding,dilation', [
    ((3, 5), (1, 2), (0, 0), (1, 1)),
    ((3, 3), (2, 1), (2, 3), (1, 2)),
    ((1, 3), (3, 1), (0, 1), (1, 1)),
    ((5, 3), (1, 1), (4, 0), (2, 1)),
])
def test_decomposition_non_square(kernel_size, stride, padding, dilation):
    """Non-square windows, no padding and padding wider than the window."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 9, 10, generator=g, dtype=torch.float64)
    out_h, out_w = (out_size(n, k, s, p, d) for n, k, s, p, d in zip(
        x.shape[2:], kernel_size, stride, padding, dilation))
    a = torch.randn(2, 2, 3, kernel_size[0] * kernel_size[1], out_h, out_w,
                    generator=g, dtype=torch.float64)
    kw = dict(kernel_size=kernel_size, stride=stride, padding=padding,
              dilation=dilation)
    torch.testing.assert_close(
        local_aggregation_decomposed(x, a, **kw),
        local_aggregation_reference(x, a, **kw), rtol=0, atol=1e-12)


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', [(2, 4, 5, 6, 1, 2, 3, 1, 1),
                                  (1, 6, 7, 5, 2, 3, 3, 2, 2),
                                  (2, 4, 4, 4, 1, 4, 5, 2, 1)])
def test_gradcheck(device, case):
    x, a, kw = make_case(*case, torch.float64, device)
    assert torch.autograd.gradcheck(
        lambda x, a: torch.ops.mmcot.local_aggregation(x, a, [
            kw['kernel_size']
        ] * 2, [kw['stride']] * 2, [kw['padding']] * 2, [kw['dilation']] * 2),
        (x, a))


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('case', [(2, 4, 5, 6, 1, 2, 3, 1, 1),
                                  (1, 6, 7, 5, 2, 3, 3, 2, 2)])
def test_gradgradcheck(device, case):
    """The fused backward is differentiable: second derivatives in every
    argument, checked numerically."""
    x, a, kw = make_case(*case, torch.float64, device)
    window = [[kw[k]] * 2 for k in ('kernel_size', 'stride', 'padding',
                                    'dilation')]
    assert torch.autograd.gradgradcheck(
        lambda x, a: torch.ops.mmcot.local_aggregation(x, a, *window),
        (x, a))


@requires_ext
def test_double_backward_equals_the_reference():
    """A gradient penalty (the gradient's norm, differentiated again) gives
    the same second derivatives through the kernels and the reference."""
    x, a, kw = make_case(2, 6, 7, 5, 2, 3, 3, 2, 1, torch.float64, 'cpu')
    window = [(kw[k], ) * 2 for k in ('kernel_size', 'stride', 'padding',
                                      'dilation')]
    results = []
    for op in (lambda x, a: local_aggregation(x, a, **kw),
               lambda x, a: local_aggregation_reference(x, a, *window)):
        out = op(x, a)
        gx, ga = torch.autograd.grad((out * out.detach().cos()).sum(),
                                     (x, a), create_graph=True)
        penalty = (gx**2).sum() + (ga**3).sum()
        results.append(torch.autograd.grad(penalty, (x, a)))
    for kernel, reference in zip(*results):
        torch.testing.assert_close(kernel, reference)
        assert reference.abs().max() > 0


@requires_ext
@pytest.mark.parametrize('device', DEVICES)
def test_deterministic(device):
    x, a, kw = make_case(3, 32, 15, 15, 1, 4, 3, 1, 1, torch.float32, device)
    runs = []
    for _ in range(2):
        out = local_aggregation(x, a, **kw)
        runs.append((out, ) + torch.autograd.grad(out.square().sum(), (x, a)))
    for first, second in zip(*runs):
        assert torch.equal(first, second)


@pytest.mark.parametrize('device', DEVICES)
def test_non_contiguous_inputs(device):
    x, a, kw = make_case(2, 8, 6, 6, 1, 4, 3, 1, 1, torch.float64, device)
    xt = x.detach().transpose(2, 3).contiguous().transpose(2, 3)
    at = a.detach().permute(0, 1, 2, 3, 5, 4).contiguous().permute(
        0, 1, 2, 3, 5, 4)
    assert not xt.is_contiguous() and not at.is_contiguous()
    expected = local_aggregation_reference(x, a, **kw)
    torch.testing.assert_close(local_aggregation(xt, at, **kw), expected)
    sliced = torch.stack([x, -x], 2).flatten(1, 2)[:, ::2]  # strided channels
    assert not sliced.is_contiguous()
    torch.testing.assert_close(
        local_aggregation(sliced, a, **kw), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('device', DEVICES)
def test_empty_batch(device):
    x = torch.zeros(0, 8, 5, 5, device=device, requires_grad=True)
    a = torch.zeros(0, 1, 2, 9, 5, 5, device=device, requires_grad=True)
    out = local_aggregation(x, a, 3, padding=1)
    assert out.shape == (0, 8, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and a.grad.shape == a.shape


def test_module():
    module = LocalAggregation(3, stride=2, padding=1)
    assert 'stride=(2, 2)' in repr(module)
    x, a, _ = make_case(2, 4, 7, 7, 1, 2, 3, 2, 1, torch.float64, 'cpu')
    torch.testing.assert_close(module(x, a),
                               loop_aggregation(x, a, 3, 2, 1, 1))


def test_fallback_without_extension(monkeypatch):
    """Without mmcot._ext the op warns once and runs the reference."""
    ext_loader.load_ext.cache_clear()
    real_import = ext_loader.importlib.import_module

    def fail(name, *args):
        if name == 'mmcot._ext':
            raise ImportError('not built')
        return real_import(name, *args)

    monkeypatch.setattr(ext_loader.importlib, 'import_module', fail)
    try:
        x, a, kw = make_case(2, 4, 5, 5, 1, 2, 3, 1, 1, torch.float64, 'cpu')
        with pytest.warns(RuntimeWarning, match='fall back'):
            out = local_aggregation(x, a, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            local_aggregation(x, a, **kw)  # said once only
        assert not ext_available()
        torch.testing.assert_close(out, loop_aggregation(x, a, 3, 1, 1, 1))
        out.sum().backward()
        assert x.grad is not None and a.grad is not None
    finally:
        ext_loader.load_ext.cache_clear()


def test_cpu_autocast():
    x, a, kw = make_case(2, 8, 6, 6, 1, 2, 3, 1, 1, torch.float32, 'cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = local_aggregation(x.bfloat16(), a, **kw)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out, local_aggregation_reference(x.bfloat16().float(), a, **kw))


def good():
    return (torch.randn(2, 8, 6, 6), torch.randn(2, 1, 4, 9, 6, 6))


@pytest.mark.parametrize('make,kwargs,error,match', [
    (lambda x, a: (x[0], a), {}, ValueError, r'input must be a 4-D'),
    (lambda x, a: (x, a[0]), {}, ValueError, r'weight must be a 6-D'),
    (lambda x, a: (x, a[:1]), {}, ValueError, r'batch size 1 .* batch size 2'),
    (lambda x, a: (x, torch.randn(2, 1, 3, 9, 6, 6)), {}, ValueError,
     r'C=8 must be divisible by the weight groups G=3'),
    (lambda x, a: (x, torch.randn(2, 1, 4, 25, 6, 6)), {}, ValueError,
     r'weight must have shape .*\(2, 1, 4, 9, 6, 6\)'),
    (lambda x, a: (x, a), dict(stride=2), ValueError,
     r'weight must have shape .*\(2, 1, 4, 9, 3, 3\)'),
    (lambda x, a: (x, a.double()), {}, TypeError, r'same dtype'),
    (lambda x, a: (x.long(), a.long()), {}, TypeError, r'input must be a '
     r'floating-point'),
    (lambda x, a: (x, a), dict(kernel_size=0), ValueError, r'kernel_size'),
    (lambda x, a: (x, a), dict(padding=-1), ValueError, r'padding'),
    (lambda x, a: (x, a), dict(stride=(1, 1, 1)), ValueError, r'stride'),
    (lambda x, a: (x, a.numpy()), {}, TypeError, r'weight must be a torch'),
    (lambda x, a: (torch.randn(2, 8, 1, 1), a), dict(padding=0), ValueError,
     r'empty output'),
    (lambda x, a: (x, a[:, :0]), {}, ValueError, r'at least one head'),
    (lambda x, a: (x, a), dict(kernel_size=3.0), ValueError, r'kernel_size'),
    (lambda x, a: (x, a), dict(kernel_size=True), ValueError, r'kernel_size'),
    (lambda x, a: (x, a), dict(kernel_size=None), ValueError, r'kernel_size'),
    (lambda x, a: (x, a), dict(dilation='1'), ValueError, r'dilation'),
    # would overflow int64 in the output size
    (lambda x, a: (x, a), dict(stride=2**64), ValueError, r'stride'),
    (lambda x, a: (x, a), dict(padding=2**62), ValueError, r'padding'),
])
def test_bad_input(make, kwargs, error, match):
    x, a = make(*good())
    args = dict(kernel_size=3, padding=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        local_aggregation(x, a, **args)


def test_integer_arguments_of_numpy_and_torch():
    """Integers other than Python's (NumPy's, a 0-d integer tensor) are
    sizes like any other."""
    x, a = good()
    expected = local_aggregation(x, a, 3, padding=1)
    for three, one in ((np.int64(3), np.int32(1)),
                       (torch.tensor(3), torch.tensor(1))):
        torch.testing.assert_close(
            local_aggregation(x, a, three, padding=one), expected)


def test_autocast_does_not_let_integer_operands_through():
    x, a = good()
    with torch.autocast('cpu'):
        with pytest.raises(TypeError, match='input must be a floating'):
            local_aggregation(x.int(), a, 3, padding=1)
        with pytest.raises(TypeError, match='weight must be a floating'):
            local_aggregation(x, a.bool(), 3, padding=1)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels,size,padding,out_size', [
    (0, 6, 1, 6),  # no channels
    (8, 0, 2, 2),  # no plane: every tap reads the padding
])
def test_empty_input_on_the_reference_path(dtype, channels, size, padding,
                                           out_size):
    """The pure-PyTorch path (here CPU half precision) takes empty planes
    and channels as the kernels do: an empty output, or zeros."""
    x = torch.randn(2, channels, size, size + 1, dtype=dtype)
    a = torch.randn(2, 1, 4, 9, out_size, out_size + 1, dtype=dtype)
    out = local_aggregation(x, a, 3, padding=padding)
    assert out.shape == (2, channels, out_size, out_size + 1)
    assert out.dtype == dtype and not out.any()


def test_device_mismatch():
    x, a = good()
    with pytest.raises(ValueError, match='same device'):
        local_aggregation(x, a.to('meta'), 3, padding=1)


@requires_cuda
def test_device_mismatch_cuda():
    x, a = good()
    with pytest.raises(ValueError, match='same device'):
        local_aggregation(x.cuda(), a, 3, padding=1)


@requires_cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_half_against_fp32(dtype):
    x, a, kw = make_case(2, 64, 17, 19, 1, 8, 3, 1, 1, torch.float32, 'cuda')
    xh = x.detach().to(dtype).requires_grad_()
    ah = a.detach().to(dtype).requires_grad_()
    # the reference in float32 on the same (rounded) inputs
    xr = xh.detach().float().requires_grad_()
    ar = ah.detach().float().requires_grad_()
    out = local_aggregation(xh, ah, **kw)
    ref = local_aggregation_reference(xr, ar, **kw)
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    grad = torch.randn_like(ref).to(dtype)
    gx, ga = torch.autograd.grad(out, (xh, ah), grad)
    rx, ra = torch.autograd.grad(ref, (xr, ar), grad.float())
    torch.testing.assert_close(gx.float(), rx, rtol=tol, atol=tol * 4)
    torch.testing.assert_close(ga.float(), ra, rtol=tol, atol=tol * 4)


@requires_cuda
def test_cuda_autocast():
    x, a, kw = make_case(2, 32, 9, 9, 1, 4, 3, 1, 1, torch.float32, 'cuda')
    with torch.autocast('cuda', dtype=torch.float16):
        out = local_aggregation(x.half(), a, **kw)  # a stays float32
        assert out.dtype == torch.float16
        out.float().sum().backward()
    assert a.grad.dtype == torch.float32
    torch.testing.assert_close(
        out.float(), local_aggregation_reference(x, a, **kw), rtol=1e-2,
        atol=1e-2)


def test_require_ext_stops_a_run_without_the_extension(tmp_path):
    """MMCOT_REQUIRE_EXT=1 (CI) turns a mmcot._ext that does not import into
    a failed run, not into skipped kernel tests."""
    (tmp_path / 'sitecustomize.py').write_text(
        'import sys\n'
        'class Block:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name == "mmcot._ext":\n'
        '            raise ImportError("hidden by the test")\n'
        'sys.meta_path.insert(0, Block())\n')
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}:{repo}')
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
               osp.abspath(__file__), '-k', 'test_module']
    hidden = subprocess.run(
        command, cwd=repo, capture_output=True, text=True, timeout=300,
        env=dict(env, MMCOT_REQUIRE_EXT='1'))
    assert hidden.returncode != 0
    assert 'MMCOT_REQUIRE_EXT=1 but mmcot._ext does not load' in (
        hidden.stdout + hidden.stderr)
    allowed = subprocess.run(
        command, cwd=repo, capture_output=True, text=True, timeout=300,
        env=dict(env, MMCOT_REQUIRE_EXT='0'))
    assert allowed.returncode == 0, allowed.stdout[-2000:]


@requires_ext
def test_extension_checks_agree_with_python():
    """The C++ entry floors the output size as Python does (a window that
    does not fit gives no output, even where truncating division would give
    one), and checks grad_output's dtype (and device, on a GPU)."""
    x = torch.randn(1, 4, 2, 6, dtype=torch.float64)
    args = ([3, 3], [2, 1], [0, 1], [1, 1])  # height: (2 - 2 - 1) // 2 + 1 = 0
    a = torch.randn(1, 1, 2, 9, 1, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match='empty output'):
        local_aggregation(x, a, (3, 3), (2, 1), (0, 1), 1)
    with pytest.raises(RuntimeError, match='empty output'):
        torch.ops.mmcot.local_aggregation(x, a, *args)
    x, a, kw = make_case(1, 4, 5, 5, 1, 2, 3, 1, 1, torch.float64, 'cpu')
    grad = torch.ones(1, 4, 5, 5, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="of the input's dtype"):
        torch.ops.mmcot.local_aggregation_backward(grad, x.detach(),
                                                   a.detach(), [3, 3], [1, 1],
                                                   [1, 1], [1, 1], True, True)


@requires_cuda
def test_backward_checks_grad_output_device():
    x, a, kw = make_case(1, 4, 5, 5, 1, 2, 3, 1, 1, torch.float64, 'cuda')
    grad = torch.ones(1, 4, 5, 5, dtype=torch.float64)  # on the CPU
    with pytest.raises(RuntimeError, match='on its device'):
        torch.ops.mmcot.local_aggregation_backward(grad, x.detach(),
                                                   a.detach(), [3, 3], [1, 1],
                                                   [1, 1], [1, 1], True, True)
