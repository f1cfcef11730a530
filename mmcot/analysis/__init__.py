from .complexity import (COT_FLOP_HANDLES, cot_flop_analyzer,
                         local_aggregation_flop_jit)

__all__ = [
    'COT_FLOP_HANDLES', 'cot_flop_analyzer', 'local_aggregation_flop_jit'
]
