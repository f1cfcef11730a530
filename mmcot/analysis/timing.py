"""Timing and memory helpers of the benchmark scripts in tools/analysis."""
import ctypes
import multiprocessing as mp
import pickle
import platform
import queue as queue_module
import resource
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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


def interleaved_times_ms(
        fns: Dict[str, Callable[[], Any]],
        device: str,
        warmup: int,
        repeats: int,
        before: Optional[Callable[[], Any]] = None) -> Dict[str, List[float]]:
    """Wall times in milliseconds of each function of ``fns``, timed in
    turns (one call of each per round, ``repeats`` rounds after
    ``warmup``), so that a slow spell of the machine falls on all of them
    alike: one list per function, in the order of the rounds. ``before()``
    runs untimed before every timed call."""
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
    return times


def interleaved_median_ms(
        fns: Dict[str, Callable[[], Any]],
        device: str,
        warmup: int,
        repeats: int,
        before: Optional[Callable[[], Any]] = None) -> Dict[str, float]:
    """Median of each function's :func:`interleaved_times_ms`."""
    times = interleaved_times_ms(fns, device, warmup, repeats, before)
    return {name: statistics.median(t) for name, t in times.items()}


def speed_ratio(reference_ms: Sequence[float],
                times_ms: Sequence[float]) -> Tuple[float, List[float]]:
    """How many times faster than the reference a model runs, from two
    interleaved series of per-round times: the ratio of the medians, and the
    first and third quartiles of the per-round ratios
    ``reference_ms[i] / times_ms[i]`` (how far the ratio can be trusted on
    a noisy machine)."""
    if len(reference_ms) != len(times_ms) or not times_ms:
        raise ValueError('reference_ms and times_ms must be series of the '
                         f'same rounds, got {len(reference_ms)} and '
                         f'{len(times_ms)} times')
    ratio = statistics.median(reference_ms) / statistics.median(times_ms)
    ratios = [r / t for r, t in zip(reference_ms, times_ms)]
    if len(ratios) == 1:
        return ratio, ratios * 2
    q1, _, q3 = statistics.quantiles(ratios, n=4, method='inclusive')
    return ratio, [q1, q3]


def profiled_ms(fn: Callable[[], Any],
                device: str,
                repeats: int,
                match: str,
                before: Optional[Callable[[], Any]] = None) -> float:
    """Time per call of ``fn()`` in milliseconds spent in what the profiler
    names with ``match`` in it: on a GPU the device time of those kernels
    (host overhead excluded), on a CPU the time of those operators. Each of
    ``repeats`` calls follows ``before()`` (untimed unless it matches)."""
    key = 'device_time_total' if device.startswith(
        'cuda') else 'cpu_time_total'
    total_us = sum(
        getattr(event, key)
        for event in _profiled_events(fn, device, repeats, before)
        if match in event.key)
    return total_us / repeats / 1e3


def _profiled_events(fn: Callable[[], Any],
                     device: str,
                     repeats: int,
                     before: Optional[Callable[[], Any]] = None) -> list:
    """The profiler's events of ``repeats`` calls of ``fn()``, each after
    ``before()``, by name (``key_averages``): CUDA kernels on a GPU, CPU
    operators otherwise."""
    from torch.profiler import ProfilerActivity, profile
    activity = (ProfilerActivity.CUDA
                if device.startswith('cuda') else ProfilerActivity.CPU)
    with profile(activities=[activity]) as prof:
        for _ in range(repeats):
            if before is not None:
                before()
            fn()
        synchronize(device)
    return list(prof.key_averages())


def self_time_shares(fn: Callable[[], Any],
                     device: str,
                     top: int,
                     repeats: int = 1) -> List[dict]:
    """Where the time of ``fn()`` goes: on a CPU the ``top`` operators of
    the largest self time (their time less that of the operators they
    call), on a GPU the kernels of the largest device time, as dicts
    ``op``, ``self_ms`` (per call of ``fn``) and ``share`` (of the total
    over every operator or kernel), largest first; over ``repeats``
    calls."""
    key = 'self_device_time_total' if device.startswith(
        'cuda') else 'self_cpu_time_total'
    times = {
        event.key: getattr(event, key)
        for event in _profiled_events(fn, device, repeats)
    }
    total = sum(times.values()) or 1
    ranked = sorted(times.items(), key=lambda item: -item[1])[:top]
    return [
        dict(op=op, self_ms=us / repeats / 1e3, share=us / total)
        for op, us in ranked if us > 0
    ]


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
        # pickled here: the queue's feeder thread would only print an error
        result = ('ok', pickle.dumps(fn(*args)))
    except BaseException as error:  # reported to the parent
        result = ('error', f'{type(error).__name__}: {error}')
    queue.put(result)


def run_isolated(fn: Callable, *args) -> Any:
    """``fn(*args)`` in a forked child process (a fresh peak RSS, no memory
    left behind); its exception is raised here as a RuntimeError, as is the
    end of a child that reports nothing (killed, out of memory, crashed)."""
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    while True:
        try:
            status, value = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if proc.is_alive():
                continue
            try:  # what it put just before it ended
                status, value = queue.get(timeout=5)
                break
            except queue_module.Empty:
                raise RuntimeError(
                    f'the child process running {getattr(fn, "__name__", fn)}'
                    f' ended (exit code {proc.exitcode}) without a result: '
                    'killed, out of memory or crashed?') from None
    proc.join()
    if status != 'ok':
        raise RuntimeError(value)
    return pickle.loads(value)


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_cpu_memory(limit_bytes: int = 2**30) -> bool:
    """Make glibc's malloc serve allocations up to ``limit_bytes`` from its
    heap, which keeps what this process (and the children it forks after)
    frees instead of unmapping it, so that a timed call after its warm-up
    holds no first-touch page faults. With glibc's dynamic mmap threshold some
    processes map a call's outputs afresh every time and others do not: the
    op's backward at 8 x 64 x 56 took 1.25 ms or 2.75 ms by process, and
    the same 1.2-1.4 ms in every process with this. Whether it applied
    (glibc only)."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, limit_bytes)
            and libc.mallopt(_M_TRIM_THRESHOLD, limit_bytes))
    except (OSError, AttributeError):
        return False


def add_malloc_defaults_argument(parser) -> None:
    """The benchmarks' ``--malloc-defaults`` flag: time with glibc's malloc
    defaults instead of :func:`reuse_freed_cpu_memory`."""
    parser.add_argument(
        '--malloc-defaults',
        action='store_true',
        help='on a CPU, time with glibc malloc\'s defaults (page faults on '
        'fresh outputs) instead of keeping freed memory')


def isolated_on_cpu(device: str, fn: Callable, *args) -> Any:
    """``fn(*args)``: on a CPU in a forked child (:func:`run_isolated`: a
    fresh peak RSS, and no torch threads started here, after which a fork
    would hang), on a GPU directly (a CUDA context does not survive a
    fork)."""
    if device.startswith('cuda'):
        return fn(*args)
    return run_isolated(fn, *args)


def format_range(low_high: Sequence[float]) -> str:
    """``[low, high]`` as ``low-high``, two decimals each."""
    return '-'.join(f'{v:.2f}' for v in low_high)


def markdown_table(rows: Sequence[Dict[str, Any]],
                   columns: List[str] = None) -> str:
    """Rows of dicts as a markdown table (floats with two decimals, a
    range ``[low, high]`` as ``low-high``)."""
    columns = columns or list(rows[0])

    def cell(value):
        if isinstance(value, float):
            return f'{value:.2f}'
        if (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, float) for v in value)):
            return format_range(value)
        return str(value)

    lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
    lines += [
        '| ' + ' | '.join(cell(row.get(c, '')) for c in columns) + ' |'
        for row in rows
    ]
    return '\n'.join(lines)


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
    """The CPU's model name as the OS reports it (``cpuinfo`` on Linux,
    else the platform's), or ``'CPU'``."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'CPU'


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model, threads, the instruction set
    torch's kernels use (its CPU capability) and the op's kernel set:
    CPU figures differ between machines of one name, so the JSON of each
    run says which it was."""
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    from mmcot.ops import ext_cpu_kernels
    kernels = ext_cpu_kernels()
    kernels = f', {kernels} kernels' if kernels else ''
    capability = torch.backends.cpu.get_cpu_capability()
    return (f'{cpu_model()} ({torch.get_num_threads()} threads, torch '
            f'{capability}{kernels})')
