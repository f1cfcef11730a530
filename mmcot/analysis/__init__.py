from .complexity import (COT_FLOP_HANDLES, DETECTION_SHAPE, SEGMENTATION_SHAPE,
                         cot_flop_analyzer, default_input_shape,
                         local_aggregation_flop_jit, model_complexity)
from .timing import (add_malloc_defaults_argument, cache_flusher,
                     copy_bandwidth_gbps, device_name, format_range,
                     interleaved_median_ms, interleaved_times_ms,
                     isolated_on_cpu, markdown_table, median_ms,
                     peak_memory_mib, profiled_ms, reuse_freed_cpu_memory,
                     run_isolated, self_time_shares, speed_ratio)

__all__ = [
    'COT_FLOP_HANDLES', 'DETECTION_SHAPE', 'SEGMENTATION_SHAPE',
    'cot_flop_analyzer',
    'default_input_shape', 'local_aggregation_flop_jit',
    'model_complexity', 'add_malloc_defaults_argument', 'cache_flusher',
    'copy_bandwidth_gbps',
    'device_name', 'format_range', 'interleaved_median_ms',
    'interleaved_times_ms', 'isolated_on_cpu', 'markdown_table', 'median_ms',
    'peak_memory_mib', 'profiled_ms', 'reuse_freed_cpu_memory',
    'run_isolated', 'self_time_shares', 'speed_ratio'
]
