"""torch.compile (fullgraph), torch.export and the ONNX decomposition of the
seven CoT backbones, against eager mode. The backbones have one block per
stage at full width; the local aggregation is the custom operator
``mmcot::local_aggregation`` (in inference without gradients
``mmcot::local_aggregation_group_normed``) throughout."""
import copy

import pytest
import torch
from mmengine.registry import MODELS

import mmcot  # noqa: F401
from mmcot.deployment import (ExportError, decompose_local_aggregation,
                              export_onnx, export_program, relative_error,
                              verify_onnx)
from mmcot.models.utils import OFFICIAL_VARIANTS
from mmcot.ops import ext_available

requires_ext = pytest.mark.skipif(not ext_available(),
                                  reason='mmcot._ext is not built')


def build(variant):
    torch.manual_seed(0)
    return MODELS.build(
        dict(OFFICIAL_VARIANTS[variant],
             stage_blocks=(1, 1, 1, 1),
             out_indices=(0, 1, 2, 3)))


def loss_of(outputs):
    """A fixed random functional of the four feature maps."""
    g = torch.Generator().manual_seed(1)
    return sum((o * torch.randn(o.shape, generator=g).to(o.device)).sum()
               for o in outputs)


def assert_close_all(got, want, **tol):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


def check_compiled(variant, backend, tol, device='cpu'):
    """Outputs of inference and a training step, the parameter gradients
    (against the largest gradient: a few, like the bias of a conv that a
    BatchNorm follows, are zero up to rounding) and the BatchNorm
    statistics of the compiled model equal eager's within ``tol``."""
    eager = build(variant).to(device)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    x = x.to(device)
    eager.eval()
    compiled_model.eval()
    with torch.no_grad():
        assert_close_all(compiled(x), eager(x), rtol=tol, atol=tol)
    eager.train()
    compiled_model.train()
    loss_of(eager(x)).backward()
    loss_of(compiled(x)).backward()
    scale = max(p.grad.abs().max() for p in eager.parameters())
    for (name, p), q in zip(eager.named_parameters(),
                            compiled_model.parameters()):
        assert (q.grad - p.grad).abs().max() <= tol * scale, name
    for (name, b), c in zip(eager.named_buffers(), compiled_model.buffers()):
        torch.testing.assert_close(c, b, rtol=tol, atol=tol, msg=name)


@requires_ext
@pytest.mark.parametrize('variant', sorted(OFFICIAL_VARIANTS))
def test_compile_fullgraph(variant):
    """Dynamo captures each backbone as one graph (no break at the op),
    AOTAutograd traces forward and backward through the op's fake and
    autograd registrations: inference and a training step equal eager."""
    torch._dynamo.reset()
    check_compiled(variant, 'aot_eager', 1e-5)


@requires_ext
def test_compile_fullgraph_inductor():
    """The default backend (inductor generates the rest of the graph around
    the op) on CoTNet-50: inference and training step."""
    torch._dynamo.reset()
    check_compiled('cotnet50', 'inductor', 1e-3)


@requires_ext
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs a CUDA device')
def test_compile_fullgraph_inductor_cuda():
    """Inductor on the GPU (Triton around the op's CUDA kernels) on
    CoTNet-50: inference and training step equal eager, TF32 off."""
    torch._dynamo.reset()
    tf32 = (torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        check_compiled('cotnet50', 'inductor', 1e-3, device='cuda')
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = tf32


@requires_ext
@pytest.mark.parametrize('variant', ['cotnext50_2x48d', 'se_cotnetd_50'])
def test_export_and_decomposition(variant):
    """torch.export keeps the custom op (at inference the one with the
    weights' GroupNorm inside) and runs mmcot's kernels; the program
    decomposed for ONNX has only standard operators; both equal eager at
    another batch size (the batch is symbolic), up to rounding: traced for
    inference, the first embed conv runs once over [x, k]
    (CoTLayer.embedding)."""
    model = build(variant).eval()
    x = torch.randn(2, 3, 64, 64)
    program = export_program(model, (x, ), dynamic_batch=True)
    targets = {str(n.target) for n in program.graph.nodes}
    assert 'mmcot.local_aggregation_group_normed.default' in targets
    assert 'aten.group_norm.default' not in targets
    decomposed = decompose_local_aggregation(program)
    assert not any('mmcot' in str(n.target) for n in decomposed.graph.nodes)
    x5 = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        want = model(x5)
        assert_close_all(program.module()(x5), want, rtol=1e-5, atol=1e-6)
        assert_close_all(decomposed.module()(x5), want, rtol=1e-4, atol=1e-5)


class DataDependent(torch.nn.Module):

    def forward(self, x):
        if x.sum() > 0:  # control flow on a value: not exportable
            return x * 2
        return x


def test_unexportable_model_is_a_clear_error():
    with pytest.raises(ExportError,
                       match='DataDependent cannot be exported with '
                       'torch.export'):
        export_program(DataDependent(), (torch.randn(2, 3), ))
    with pytest.raises(TypeError, match='example_inputs must be a tuple'):
        export_program(build('cotnet50'), torch.randn(1, 3, 64, 64))


class NaNs(torch.nn.Module):

    def forward(self, x):
        return torch.sqrt(-1 - torch.relu(x))


def test_onnx_verification_does_not_pass_nans(tmp_path):
    """A NaN on either side is an infinite error, not the 0 that a max
    over comparisons with NaN gives."""
    x = torch.randn(2, 4)
    linear = torch.nn.Linear(4, 3)
    path = export_onnx(linear, (x, ), str(tmp_path / 'linear.onnx'))
    assert verify_onnx(path, linear, (x, )) < 1e-6
    assert verify_onnx(path, torch.nn.Sequential(linear, NaNs()),
                       (x, )) == float('inf')
    path = export_onnx(NaNs(), (x, ), str(tmp_path / 'nans.onnx'))
    assert verify_onnx(path, torch.nn.Identity(), (x, )) == float('inf')


def test_relative_error_is_relative_to_the_largest_value():
    """The measure the ONNX check, benchmark_deploy.py and the op
    benchmark report: worst difference over the largest magnitude."""
    want = torch.tensor([[4.0, -2.0], [1.0, 0.5]], dtype=torch.float64)
    got = want.clone()
    assert relative_error(got, want) == 0.0
    got[1, 1] += 0.01  # 0.01 of the largest value, 4
    assert relative_error(got, want) == pytest.approx(0.0025)
    assert relative_error(got.numpy(), want) == pytest.approx(0.0025)
    assert relative_error(torch.zeros(0, 3), torch.zeros(0, 3)) == 0.0
    assert relative_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert relative_error(torch.full((3, ), 1e-30),
                          torch.zeros(3)) == float('inf')


@pytest.mark.parametrize('side', ['got', 'want'])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_relative_error_does_not_hide_nan_or_inf(side, value):
    want = torch.ones(2, 3, dtype=torch.float16)
    got = want.clone()
    (got if side == 'got' else want)[1, 2] = value
    assert relative_error(got, want) == float('inf')


def test_relative_error_refuses_different_shapes():
    with pytest.raises(ValueError, match='one shape'):
        relative_error(torch.zeros(2, 3), torch.zeros(3, 2))
