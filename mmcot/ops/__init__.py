from .ext_loader import ext_available, ext_cpu_kernels, ext_with_cuda
from .local_aggregation import (LocalAggregation, local_aggregation,
                                local_aggregation_decomposed,
                                local_aggregation_reference)
from .local_aggregation_group_normed import (
    group_norm_weights, local_aggregation_group_normed,
    local_aggregation_group_normed_decomposed,
    local_aggregation_group_normed_reference)

__all__ = [
    'LocalAggregation', 'local_aggregation', 'local_aggregation_decomposed',
    'local_aggregation_reference', 'local_aggregation_group_normed',
    'local_aggregation_group_normed_decomposed',
    'local_aggregation_group_normed_reference', 'group_norm_weights',
    'ext_available', 'ext_cpu_kernels', 'ext_with_cuda'
]
