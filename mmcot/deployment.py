"""Exporting models with CoT layers: ``torch.export`` programs and ONNX files.

The local aggregation is the custom operator ``mmcot::local_aggregation``
(at inference ``mmcot::local_aggregation_group_normed``, with the CoT
layer's GroupNorm inside): ``torch.export`` keeps it (the program runs
mmcot's kernels), and for ONNX it is decomposed into GroupNorm, pad, slice,
multiply and add (:func:`mmcot.ops.local_aggregation_decomposed`), so that
the file holds
standard ONNX operators only and runs in onnxruntime or any other runtime
without mmcot.
"""
import os
from typing import Optional, Sequence, Tuple

import torch

from mmcot.fileio import atomic_write
from mmcot.ops.ext_loader import load_ext
from mmcot.ops.local_aggregation import local_aggregation_decomposed
from mmcot.ops.local_aggregation_group_normed import \
    local_aggregation_group_normed_decomposed


class ClassScores(torch.nn.Module):
    """An mmpretrain classifier as a plain module: images (N, 3, H, W) in,
    class scores (N, num_classes) out (``classifier(images,
    mode='tensor')``), what is exported, compiled and counted."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images, mode='tensor')


class ExportError(RuntimeError):
    """A model that cannot be exported; the message says what and why."""


def export_program(
        model: torch.nn.Module,
        example_inputs: Tuple[torch.Tensor, ...],
        dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (in eval mode) on
    ``example_inputs``, with a symbolic batch size if ``dynamic_batch``.

    Raises:
        ExportError: the model does something ``torch.export`` cannot
            capture (data-dependent control flow, unsupported Python, ...).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f'model must be a torch.nn.Module, got '
                        f'{type(model).__name__}')
    if not isinstance(example_inputs, tuple) or not all(
            isinstance(x, torch.Tensor) for x in example_inputs):
        raise TypeError('example_inputs must be a tuple of tensors')
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim('batch', min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model,
                                       example_inputs,
                                       dynamic_shapes=dynamic_shapes)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error) else ''
        raise ExportError(
            f'{type(model).__name__} cannot be exported with torch.export: '
            f'{type(error).__name__}: {reason}') from error


def decompose_local_aggregation(
        program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program with every ``mmcot::local_aggregation`` (and
    ``mmcot::local_aggregation_group_normed``) replaced by its
    decomposition into standard operators (and torch's default
    decompositions applied)."""
    table = torch.export.default_decompositions()
    # the op exists once mmcot._ext is loaded; a program can hold it only
    # then (a model without CoT layers may come first)
    if load_ext() is not None:
        table[torch.ops.mmcot.local_aggregation.default] = (
            local_aggregation_decomposed)
        table[torch.ops.mmcot.local_aggregation_group_normed.default] = (
            local_aggregation_group_normed_decomposed)
    return program.run_decompositions(table)


def export_onnx(model: torch.nn.Module,
                example_inputs: Tuple[torch.Tensor, ...],
                path: str,
                dynamic_batch: bool = False,
                input_names: Optional[Sequence[str]] = None,
                output_names: Optional[Sequence[str]] = None) -> str:
    """Write ``model`` as an ONNX file of standard operators to ``path``
    (whole or not at all); returns ``path``.

    Needs ``onnx`` and ``onnxscript`` (requirements/deployment.txt).
    """
    program = decompose_local_aggregation(
        export_program(model, example_inputs, dynamic_batch))
    try:
        onnx_program = torch.onnx.export(
            program,
            input_names=list(input_names) if input_names else None,
            output_names=list(output_names) if output_names else None,
            dynamo=True,
            verbose=False)
    except ImportError as error:
        raise ExportError(
            f'ONNX export needs onnx and onnxscript ({error}): pip install '
            '-r requirements/deployment.txt') from error
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        f.write(onnx_program.model_proto.SerializeToString())
    return path


def relative_error(got, want) -> float:
    """How far ``got`` lies from ``want`` (tensors or arrays of one shape):
    the largest absolute difference over the largest magnitude of ``want``,
    in float64; 0 for empty results, inf where either holds a NaN or an inf
    (a difference would hide it) or where ``want`` is all zero and ``got``
    is not. What the deployment checks and the op benchmark's comparison of
    kernel builds report."""
    got = torch.as_tensor(got).detach().cpu().double()
    want = torch.as_tensor(want).detach().cpu().double()
    if got.shape != want.shape:
        raise ValueError(f'got and want must have one shape, got '
                         f'{tuple(got.shape)} and {tuple(want.shape)}')
    if got.numel() == 0:
        return 0.0
    if not (got.isfinite().all() and want.isfinite().all()):
        return float('inf')
    difference = (got - want).abs().max().item()
    scale = want.abs().max().item()
    if scale == 0:
        return 0.0 if difference == 0 else float('inf')
    return difference / scale


def verify_onnx(path: str, model: torch.nn.Module,
                inputs: Tuple[torch.Tensor, ...]) -> float:
    """Largest error of the ONNX file (in onnxruntime, on the CPU) against
    ``model`` on ``inputs``, relative to the largest PyTorch output; inf
    where either gives a NaN or an inf (a comparison would hide it)."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path,
                                           providers=['CPUExecutionProvider'])
    feeds = {
        arg.name: x.detach().cpu().numpy()
        for arg, x in zip(session.get_inputs(), inputs)
    }
    got = session.run(None, feeds)
    with torch.no_grad():
        want = model(*inputs)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    if len(got) != len(want):
        raise ExportError(f'{path} has {len(got)} outputs, the model '
                          f'{len(want)}')
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != tuple(w.shape):
            raise ExportError(f'{path} gives an output of shape {g.shape}, '
                              f'the model {tuple(w.shape)}')
        worst = max(worst, relative_error(g, w))
    return worst
