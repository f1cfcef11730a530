"""FLOPs of models with CoT layers in MMEngine's complexity analysis.

MMEngine's :class:`~mmengine.analysis.FlopAnalyzer` counts multiply-adds of
the ATen ops it knows (convs, linear layers, ...) and skips others. The
local aggregation runs as the custom operator ``mmcot::local_aggregation``,
which it would skip:
:data:`COT_FLOP_HANDLES` counts it as ``K*K`` multiply-adds per output
element, the convention of the paper's tables.
"""
from typing import Any, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from mmcot.deployment import ClassScores


def local_aggregation_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of one local aggregation: ``numel(out) * K*K``.

    inputs: values (N, C, H, W), weights (N, heads, G, K*K, H', W'), ...
    outputs: (N, heads*C, H', W').
    """
    taps = get_shape(inputs[1])[3]
    out_shape = get_shape(outputs[0])
    numel = 1
    for size in out_shape:
        numel *= size
    return numel * taps


COT_FLOP_HANDLES = {
    'mmcot::local_aggregation': local_aggregation_flop_jit,
}


#: the names FlopAnalyzer.by_operator() gives the handled operators
#: (without their namespace)
AGGREGATION_OPERATORS = tuple(
    name.split('::')[-1] for name in COT_FLOP_HANDLES)


def cot_flop_analyzer(model: torch.nn.Module, inputs) -> FlopAnalyzer:
    """A FlopAnalyzer that also counts the local aggregation.

    The compiled op must be in use (``mmcot._ext`` built): the pure-PyTorch
    fallback is traced as ``unfold`` and elementwise ops, which MMEngine
    does not count.
    """
    from mmcot.ops import ext_available
    if not ext_available():
        raise RuntimeError('counting FLOPs of CoT layers needs the compiled '
                           'op (mmcot._ext); build it with '
                           '`pip install --no-build-isolation -e .`')
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**COT_FLOP_HANDLES)
    return analyzer


def model_complexity(cfg, shape) -> dict:
    """Params and FLOPs of a config's model for one (3, H, W) image.

    Classification configs count the whole classifier; detection configs
    (``default_scope='mmdet'``) count the backbone.

    Returns:
        dict: ``counted`` (what was counted), ``shape``, ``params``,
        ``flops`` (multiply-adds), ``aggregation_flops`` (of which the local
        aggregation) and ``analyzer`` (the FlopAnalyzer, for tables).
    """
    from mmengine.analysis import parameter_count
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        model = MODELS.build(cfg.model)
    model.eval()
    if cfg.get('default_scope') == 'mmdet':
        counted, what = model.backbone, 'backbone'
    else:
        counted, what = ClassScores(model), 'classifier'
    analyzer = cot_flop_analyzer(counted, (torch.randn(1, 3, *shape), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return dict(
        counted=what,
        shape=list(shape),
        params=parameter_count(counted)[''],
        flops=analyzer.total(),
        aggregation_flops=sum(analyzer.by_operator().get(name, 0)
                              for name in AGGREGATION_OPERATORS),
        analyzer=analyzer)
