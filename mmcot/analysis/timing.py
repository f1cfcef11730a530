"""Timing and memory helpers of the benchmark scripts in tools/analysis."""
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch


def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any],
              device: str,
              warmup: int,
              repeats: int,
              before: Optional[Callable[[], Any]] = None) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` calls;
    ``before()`` runs untimed before every timed call (e.g. a cache
    flush)."""
    return interleaved_median_ms({'': fn}, device, warmup, repeats,
                                 before)['']


def interleaved_median_ms(
        fns: Dict[str, Callable[[], Any]],
        device: str,
        warmup: int,
        repeats: int,
        before: Optional[Callable[[], Any]] = None) -> Dict[str, float]:
    """Median wall time in milliseconds of each function of ``fns``, timed
    in turns (one call of each per round, ``repeats`` rounds after
    ``warmup``), so that a slow spell of the machine falls on all of them
    alike; ``before()`` runs untimed before every timed call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if before is not None:
                before()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def profiled_ms(fn: Callable[[], Any],
                device: str,
                repeats: int,
                match: str,
                before: Optional[Callable[[], Any]] = None) -> float:
    """Time per call of ``fn()`` in milliseconds spent in what the profiler
    names with ``match`` in it: on a GPU the device time of those kernels
    (host overhead excluded), on a CPU the time of those operators. Each of
    ``repeats`` calls follows ``before()`` (untimed unless it matches)."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith('cuda')
    activity = ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        for _ in range(repeats):
            if before is not None:
                before()
            fn()
        synchronize(device)
    key = 'device_time_total' if cuda else 'cpu_time_total'
    total_us = sum(
        getattr(event, key) for event in prof.key_averages()
        if match in event.key)
    return total_us / repeats / 1e3


def cache_flusher(device: str, mib: int = 256) -> Callable[[], None]:
    """A function that evicts the device's caches by writing ``mib`` MiB
    (8x an H100's 50 MB L2; 256 MiB also exceeds CPU last-level caches)."""
    buffer = torch.empty(mib * 2**20 // 4, device=device)
    return lambda: buffer.zero_()


def copy_bandwidth_gbps(device: str, mib: int = 256) -> float:
    """Device copy bandwidth in GB/s: bytes read + written by copying
    ``mib`` MiB (default: 5x an H100's L2, 8x this CPU's L3) into a buffer
    allocated and written once before, median of 10. A fresh destination
    per copy (``clone``) would also time the CPU's first-touch page
    faults, which the op's outputs (reused by the allocator) do not pay:
    it measured 8 GB/s where this gives 41-74 on a 2-core CPU."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.zeros_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, 3, 10)
    return 2 * src.numel() * 4 / ms / 1e6


def peak_memory_mib(fn: Callable[[], Any], device: str) -> float:
    """Peak memory one call of ``fn()`` adds, in MiB: the CUDA allocator's
    peak over what is allocated before, or on a CPU the growth of the
    process' peak resident set (meaningful in a fresh process, see
    :func:`run_isolated`)."""
    if device.startswith('cuda'):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def _child(queue, fn, args):
    try:
        queue.put(('ok', fn(*args)))
    except BaseException as error:  # reported to the parent
        queue.put(('error', f'{type(error).__name__}: {error}'))


def run_isolated(fn: Callable, *args) -> Any:
    """``fn(*args)`` in a forked child process (a fresh peak RSS, no memory
    left behind); its exception is raised here as a RuntimeError."""
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != 'ok':
        raise RuntimeError(value)
    return value


def isolated_on_cpu(device: str, fn: Callable, *args) -> Any:
    """``fn(*args)``: on a CPU in a forked child (:func:`run_isolated`: a
    fresh peak RSS, and no torch threads started here, after which a fork
    would hang), on a GPU directly (a CUDA context does not survive a
    fork)."""
    if device.startswith('cuda'):
        return fn(*args)
    return run_isolated(fn, *args)


def markdown_table(rows: Sequence[Dict[str, Any]],
                   columns: List[str] = None) -> str:
    """Rows of dicts as a markdown table (floats with two decimals)."""
    columns = columns or list(rows[0])

    def cell(value):
        return f'{value:.2f}' if isinstance(value, float) else str(value)

    lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
    lines += [
        '| ' + ' | '.join(cell(row.get(c, '')) for c in columns) + ' |'
        for row in rows
    ]
    return '\n'.join(lines)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's threads and the op's kernel set."""
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    from mmcot.ops import ext_cpu_kernels
    kernels = ext_cpu_kernels()
    kernels = f', {kernels} kernels' if kernels else ''
    return f'CPU ({torch.get_num_threads()} threads{kernels})'
