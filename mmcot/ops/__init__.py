from .ext_loader import ext_available, ext_cpu_kernels, ext_with_cuda
from .local_aggregation import (LocalAggregation, local_aggregation,
                                local_aggregation_decomposed,
                                local_aggregation_reference)

__all__ = [
    'LocalAggregation', 'local_aggregation', 'local_aggregation_decomposed',
    'local_aggregation_reference',
    'ext_available', 'ext_cpu_kernels', 'ext_with_cuda'
]
