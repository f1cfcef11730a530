"""mmcot's CUDA kernels (the shipped .cuh), compiled with the host compiler
and run on a CPU grid by grid (cuda_kernels_on_cpu.cpp), against the unfold
reference: the forward and both gradients of the fused backward, in float64
over a sweep of shapes, windows and launch grids with 32- and 64-bit
indices; the same for the strip kernels (3 x 3 windows, 2 or 4 pixels a
thread, build_kernel_variants.py's strip_2 / strip_4); and float16 /
bfloat16 storage against float32. Outputs start as NaN, so an element no
thread writes fails the comparison."""
import os.path as osp

import pytest
import torch

import mmcot.ops.ext_loader as ext_loader
from mmcot.ops import local_aggregation_reference

HERE = osp.dirname(osp.abspath(__file__))
CSRC = osp.join(osp.dirname(ext_loader.__file__), 'csrc')

# n, c, h, w, heads, groups, kernel, stride, padding, dilation
CASES = [
    (2, 8, 9, 7, 1, 2, (3, 3), (1, 1), (1, 1), (1, 1)),  # CoT's window
    (1, 6, 8, 11, 2, 3, (3, 3), (1, 1), (0, 0), (1, 1)),  # padding 0
    (2, 4, 7, 10, 3, 4, (5, 5), (1, 1), (2, 2), (1, 1)),  # 25 taps, 3 heads
    (1, 8, 10, 9, 1, 8, (3, 5), (1, 1), (1, 2), (1, 1)),  # non-square K
    (2, 6, 9, 9, 2, 2, (1, 3), (1, 1), (0, 1), (1, 1)),
    (1, 4, 6, 5, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1)),  # K = 1
    (2, 8, 11, 9, 1, 4, (3, 3), (2, 2), (1, 1), (1, 1)),  # stride 2
    (1, 6, 13, 10, 3, 3, (3, 3), (3, 1), (1, 1), (1, 1)),  # stride (3, 1)
    (2, 4, 15, 12, 1, 2, (5, 3), (4, 2), (2, 1), (1, 1)),  # stride (4, 2)
    (1, 8, 12, 12, 2, 4, (3, 3), (1, 1), (2, 2), (2, 2)),  # dilation 2
    (2, 4, 14, 11, 1, 4, (3, 3), (1, 1), (3, 1), (3, 1)),  # dilation (3, 1)
    (1, 6, 9, 13, 1, 2, (3, 3), (2, 3), (0, 3), (1, 3)),
    (1, 4, 8, 6, 1, 2, (3, 3), (1, 1), (3, 3), (1, 1)),  # padding > same
    (2, 3, 5, 9, 2, 3, (5, 5), (2, 2), (4, 4), (1, 1)),  # output > input
    (1, 8, 10, 7, 1, 2, (7, 7), (1, 1), (3, 3), (1, 1)),  # 49 taps
    (1, 4, 12, 12, 2, 4, (5, 5), (3, 3), (5, 5), (2, 2)),
    # C/G = 8, as in CoT layers
    (2, 16, 9, 7, 1, 2, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 24, 10, 9, 2, 3, (5, 3), (2, 1), (2, 1), (1, 1)),
    (2, 8, 12, 11, 1, 1, (3, 3), (1, 1), (2, 2), (2, 2)),
    (1, 16, 5, 9, 3, 2, (5, 5), (2, 2), (4, 4), (1, 1)),  # output > input
    (1, 32, 8, 8, 1, 4, (3, 3), (3, 3), (0, 0), (1, 1)),
]
# (threads per block, most blocks): a grid smaller than the work runs the
# grid-stride loop
GRIDS = [(32, 3), (128, 10**6)]


@pytest.fixture(scope='module')
def kernels(tmp_path_factory):
    from torch.utils.cpp_extension import load
    return load(
        name='mmcot_cuda_kernels_on_cpu',
        sources=[osp.join(HERE, 'cuda_kernels_on_cpu.cpp')],
        extra_include_paths=[CSRC],
        extra_cflags=['-O1'],
        build_directory=str(tmp_path_factory.mktemp('cuda_on_cpu')),
        verbose=False)


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(case, dtype=torch.float64, seed=0):
    n, c, h, w, heads, groups, kernel, stride, padding, dilation = case
    ho, wo = (out_size(*args)
              for args in zip((h, w), kernel, stride, padding, dilation))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    a = torch.randn(n, heads, groups, kernel[0] * kernel[1], ho, wo,
                    generator=g, dtype=torch.float64)
    gy = torch.randn(n, heads * c, ho, wo, generator=g, dtype=torch.float64)
    window = (list(kernel), list(stride), list(padding), list(dilation))
    return x.to(dtype), a.to(dtype), gy.to(dtype), window


def reference(x, a, gy, window):
    """Output and both gradients of the unfold reference in float64."""
    x = x.double().requires_grad_()
    a = a.double().requires_grad_()
    out = local_aggregation_reference(x, a, *window)
    gx, ga = torch.autograd.grad(out, (x, a), gy.double())
    return out.detach(), gx, ga


def assert_near(got, want, tol, what):
    assert not got.isnan().any(), f'{what}: elements left unwritten'
    scale = want.abs().max().clamp_min(1)
    error = (got.double() - want).abs().max() / scale
    assert error <= tol, f'{what}: relative error {error:.2e} > {tol:.0e}'


def case_id(case):
    n, c, h, w, heads, groups, k, s, p, d = case
    return (f'{n}x{c}x{h}x{w}-heads{heads}-G{groups}-k{k[0]}x{k[1]}'
            f'-s{s[0]}x{s[1]}-p{p[0]}x{p[1]}-d{d[0]}x{d[1]}')


@pytest.mark.parametrize('index64', [False, True], ids=['int32', 'int64'])
@pytest.mark.parametrize('grid', GRIDS, ids=['capped-grid', 'full-grid'])
@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_kernels_match_reference_float64(kernels, case, grid, index64):
    x, a, gy, window = make_case(case)
    out, gx, ga = reference(x, a, gy, window)
    assert_near(kernels.forward(x, a, *window, *grid, index64), out, 1e-13,
                'forward')
    unit_stride = window[1] == [1, 1]
    variants = [unit_stride] + ([False] if unit_stride else [])
    for unit in variants:  # a stride-1 case runs both backward variants
        got_x, got_a = kernels.backward(gy, x, a, *window, True, True, *grid,
                                        index64, unit)
        assert_near(got_x, gx, 1e-13, f'input gradient (unit={unit})')
        assert_near(got_a, ga, 1e-13, f'weight gradient (unit={unit})')


def strip_applies(case):
    """Whether the strip kernels take the case: 3 x 3 windows at unit
    stride and dilation."""
    return case[6:8] == ((3, 3), (1, 1)) and case[9] == (1, 1)


def strip_kernels(case):
    """(pixels a thread, vectors) of each strip kernel that takes the case:
    vectors where padding is 1 across and the width divides by the pixels
    (the tensors of make_case are aligned)."""
    width, padding = case[3], case[8]
    return [(pixels, vectors) for pixels in (2, 4)
            for vectors in (False, True)
            if not vectors or (padding[1] == 1 and width % pixels == 0)]


STRIP_CASES = [case for case in CASES if strip_applies(case)] + [
    (2, 6, 5, 2, 1, 3, (3, 3), (1, 1), (1, 1), (1, 1)),  # one short strip
    (1, 4, 6, 13, 3, 2, (3, 3), (1, 1), (0, 0), (1, 1)),  # 11 columns
    (2, 8, 7, 9, 2, 4, (3, 3), (1, 1), (2, 3), (1, 1)),  # output > input
    (1, 16, 5, 6, 1, 2, (3, 3), (1, 1), (1, 0), (1, 1)),
    # widths of whole strips, padding 1 across: vector loads and stores
    (2, 8, 6, 8, 2, 4, (3, 3), (1, 1), (1, 1), (1, 1)),
    (1, 16, 5, 12, 1, 2, (3, 3), (1, 1), (0, 1), (1, 1)),
    (2, 4, 7, 4, 3, 2, (3, 3), (1, 1), (2, 1), (1, 1)),  # output taller
]
STRIP_RUNS = [(case, pixels, vectors) for case in STRIP_CASES
              for pixels, vectors in strip_kernels(case)]


def strip_run_id(run):
    case, pixels, vectors = run
    return f'{case_id(case)}-{pixels}px' + ('-vectors' if vectors else '')


@pytest.mark.parametrize('index64', [False, True], ids=['int32', 'int64'])
@pytest.mark.parametrize('grid', GRIDS, ids=['capped-grid', 'full-grid'])
@pytest.mark.parametrize('run', STRIP_RUNS, ids=strip_run_id)
def test_strip_kernels_match_reference_float64(kernels, run, grid, index64):
    case, pixels, vectors = run
    x, a, gy, window = make_case(case)
    out, gx, ga = reference(x, a, gy, window)
    what = f'{pixels} pixels a thread, vectors {vectors}'
    assert_near(
        kernels.forward_strip(x, a, *window, pixels, vectors, *grid, index64),
        out, 1e-13, f'strip forward, {what}')
    got_x, got_a = kernels.backward_strip(gy, x, a, *window, True, True,
                                          pixels, vectors, *grid, index64)
    assert_near(got_x, gx, 1e-13, f'strip input gradient, {what}')
    assert_near(got_a, ga, 1e-13, f'strip weight gradient, {what}')


@pytest.mark.parametrize('vectors', [False, True])
def test_strip_backward_computes_only_what_is_asked(kernels, vectors):
    x, a, gy, window = make_case(STRIP_CASES[-3])  # 2 heads, vectors fit
    _, gx, ga = reference(x, a, gy, window)
    got_x, got_a = kernels.backward_strip(gy, x, a, *window, True, False, 4,
                                          vectors, 32, 3, False)
    assert got_a is None
    assert_near(got_x, gx, 1e-13, 'input gradient alone')
    got_x, got_a = kernels.backward_strip(gy, x, a, *window, False, True, 4,
                                          vectors, 32, 3, False)
    assert got_x is None
    assert_near(got_a, ga, 1e-13, 'weight gradient alone')


@pytest.mark.parametrize('pixels', [2, 4])
@pytest.mark.parametrize('vectors', [False, True])
def test_forward_strip_ignores_weights_of_padding_taps(kernels, pixels,
                                                       vectors):
    """As the general forward: a tap in the padding adds nothing, whatever
    its weight (NaN here); the other weights give the reference's sum."""
    x, a, gy, window = make_case((2, 8, 6, 8, 2, 4, (3, 3), (1, 1), (1, 1),
                                  (1, 1)))
    padded = torch.zeros(x.shape[-2:], dtype=torch.bool)
    padded = torch.nn.functional.pad(padded, (1, 1, 1, 1), value=True)
    in_padding = padded.unfold(0, 3, 1).unfold(1, 3, 1).reshape(6, 8, 9)
    in_padding = in_padding.permute(2, 0, 1)  # (taps, H_out, W_out)
    poisoned = a.masked_fill(in_padding, float('nan'))
    out, _, _ = reference(x, a.masked_fill(in_padding, 0), gy, window)
    assert_near(kernels.forward(x, poisoned, *window, 128, 10**6, False), out,
                1e-13, 'general forward')
    assert_near(
        kernels.forward_strip(x, poisoned, *window, pixels, vectors, 128,
                              10**6, False), out, 1e-13, 'strip forward')


def test_strip_kernels_refuse_other_windows(kernels):
    for case in (CASES[3], CASES[6], CASES[9]):  # 3 x 5, stride 2, dilation 2
        x, a, gy, window = make_case(case)
        with pytest.raises(RuntimeError, match='3 x 3 windows'):
            kernels.forward_strip(x, a, *window, 4, False, 128, 10**6, False)
        with pytest.raises(RuntimeError, match='3 x 3 windows'):
            kernels.backward_strip(gy, x, a, *window, True, True, 4, False,
                                   128, 10**6, False)
    x, a, gy, window = make_case(CASES[0])  # 7 columns
    with pytest.raises(RuntimeError, match='vector strips'):
        kernels.forward_strip(x, a, *window, 2, True, 128, 10**6, False)


@pytest.mark.parametrize('case', [CASES[2], CASES[16]], ids=case_id)
def test_backward_computes_only_what_is_asked(kernels, case):
    x, a, gy, window = make_case(case)
    _, gx, ga = reference(x, a, gy, window)
    got_x, got_a = kernels.backward(gy, x, a, *window, True, False, 32, 3,
                                    False, True)
    assert got_a is None
    assert_near(got_x, gx, 1e-13, 'input gradient alone')
    got_x, got_a = kernels.backward(gy, x, a, *window, False, True, 32, 3,
                                    False, True)
    assert got_x is None
    assert_near(got_a, ga, 1e-13, 'weight gradient alone')


HALF_CASES = [
    (2, 64, 9, 9, 1, 8, (3, 3), (1, 1), (1, 1), (1, 1)),  # CoT, C/G = 8
    (1, 256, 7, 7, 1, 4, (3, 3), (1, 1), (1, 1), (1, 1)),  # C/G = 64
    (2, 64, 6, 8, 1, 8, (3, 3), (1, 1), (1, 1), (1, 1)),  # vector strips
    (2, 16, 11, 9, 2, 4, (3, 3), (2, 2), (1, 1), (1, 1)),
    (1, 8, 10, 7, 1, 2, (5, 5), (1, 1), (2, 2), (1, 1)),  # 3 tap chunks
]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16],
                         ids=['float16', 'bfloat16'])
@pytest.mark.parametrize('case', HALF_CASES, ids=case_id)
def test_16_bit_storage_against_float32(kernels, case, dtype):
    """16-bit tensors, float accumulation: within a few roundings of the
    float64 result on the same (rounded) inputs; sums of 64 channels
    accumulated in 16 bits would not be."""
    x, a, gy, window = make_case(case, dtype)
    out, gx, ga = reference(x, a, gy, window)
    eps = torch.finfo(dtype).eps
    taps = window[0][0] * window[0][1]
    unit = window[1] == [1, 1]
    # one rounding per stored result, one per 9-tap chunk carried over
    tol = eps * (1 + (taps - 1) // 9)
    assert_near(kernels.forward(x, a, *window, 128, 10**6, False), out, tol,
                'forward')
    got_x, got_a = kernels.backward(gy, x, a, *window, True, True, 128,
                                    10**6, False, unit)
    assert_near(got_x, gx, tol, 'input gradient')
    assert_near(got_a, ga, tol, 'weight gradient')
    for pixels, vectors in strip_kernels(case) if strip_applies(case) else []:
        what = f'{pixels} pixels a thread, vectors {vectors}'
        assert_near(
            kernels.forward_strip(x, a, *window, pixels, vectors, 128, 10**6,
                                  False), out, tol, f'strip forward, {what}')
        got_x, got_a = kernels.backward_strip(gy, x, a, *window, True, True,
                                              pixels, vectors, 128, 10**6,
                                              False)
        assert_near(got_x, gx, tol, f'strip input gradient, {what}')
        assert_near(got_a, ga, tol, f'strip weight gradient, {what}')
