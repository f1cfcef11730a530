"""The CPU kernels of mmcot._ext as built: parallel (OpenMP), compiled once
per instruction set with only the AVX2 set using AVX, and every set, at any
number of threads, giving the reference's results."""
import itertools
import json
import os
import platform
import re
import subprocess
import sys

import pytest
import torch

from mmcot.ops import ext_available, local_aggregation
from mmcot.ops import local_aggregation_reference as reference

requires_ext = pytest.mark.skipif(not ext_available(),
                                  reason='mmcot._ext is not built')
requires_x86_linux = pytest.mark.skipif(
    not (sys.platform.startswith('linux') and platform.machine() == 'x86_64'),
    reason='the AVX2 kernels are built on x86-64 Linux')


def ext_file() -> str:
    import mmcot._ext
    return mmcot._ext.__file__


def objdump(*args) -> str:
    return subprocess.run(['objdump', *args, ext_file()],
                          capture_output=True,
                          text=True,
                          check=True).stdout


def functions_using_avx() -> dict:
    """Demangled function name -> whether it has an AVX instruction (a VEX
    or EVEX one: a ``v`` mnemonic on xmm/ymm/zmm registers)."""
    uses, name = {}, None
    for line in objdump('-d', '-C', '--no-show-raw-insn').splitlines():
        header = re.match(r'^[0-9a-f]+ <(.*)>:$', line)
        if header:
            name = header.group(1)
            uses[name] = False
            continue
        instruction = re.match(r'^\s+[0-9a-f]+:\s+(\S+)\s*(.*)$', line)
        if (name and instruction and instruction.group(1).startswith('v')
                and re.search(r'%[xyz]mm', instruction.group(2))):
            uses[name] = True
    return uses


@requires_ext
@requires_x86_linux
def test_kernels_are_built_with_openmp():
    """Without OpenMP, ATen's inline at::parallel_for runs the kernels'
    whole range on the calling thread."""
    assert 'GOMP_parallel' in objdump('-T')


@requires_ext
@requires_x86_linux
def test_only_the_avx2_kernels_use_avx():
    """No function that other code could call (an inline function shared
    by several files) is compiled for AVX2: the default kernels and the
    rest of the module run on any x86-64 CPU."""
    uses = functions_using_avx()
    avx = {name for name, used in uses.items() if used}
    for kernel in ('forward<float>', 'backward<float>'):
        assert any(f'mmcot::cpu::avx2::{kernel}' in name for name in avx)
    assert all('mmcot::cpu::avx2::' in name for name in avx), sorted(avx)
    assert any('mmcot::cpu::base::forward<float>' in name for name in uses)


#: (n, c, h, w, heads, groups), (kernel_size, stride, padding, dilation):
#: the whole-plane plan, the per-row plan with heads (twice), a 56 x 56
#: plane (one group a task) and seven groups of small planes (uneven
#: blocks); the centred windows of 8 channels a group on the group
#: kernels (rows narrower than a vector at 7 x 7), with two heads the
#: backward on the segment kernels; in channels-last memory (every case
#: runs in both layouts), 64 channels in 8 groups on the channels-last
#: kernels' vectors of groups, one head and two
CASES = [
    ((2, 16, 7, 7, 1, 2), (3, 1, 1, 1)),
    ((2, 12, 6, 11, 2, 3), (5, 2, 4, 2)),
    ((1, 16, 56, 56, 1, 2), (3, 1, 1, 1)),
    ((1, 8, 40, 44, 2, 1), (3, 2, 1, 1)),
    ((3, 56, 9, 8, 2, 7), (3, 1, 1, 1)),
    ((3, 56, 8, 8, 2, 7), (3, 1, 1, 1)),
    ((2, 64, 9, 7, 1, 8), (3, 1, 1, 1)),
    ((2, 64, 6, 5, 2, 8), (3, 1, 1, 1)),
]
LAYOUTS = ('contiguous', 'channels_last')


def make_inputs(shape, window, dtype, seed=0):
    n, c, h, w, heads, groups = shape
    k, s, p, d = window
    out_h, out_w = ((size + 2 * p - d * (k - 1) - 1) // s + 1
                    for size in (h, w))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    a = torch.randn(n, heads, groups, k * k, out_h, out_w, generator=g,
                    dtype=torch.float64)
    return (x.to(dtype).requires_grad_(), a.to(dtype).requires_grad_(),
            dict(kernel_size=k, stride=s, padding=p, dilation=d))


def in_layout(x, a, layout):
    """``x`` and ``a`` as leaves, contiguous or (``layout``) channels-last
    values with pixel-major weights: what a channels-last model gives."""
    if layout == 'channels_last':
        n, heads, groups, taps, h, w = a.shape
        x = x.detach().contiguous(memory_format=torch.channels_last)
        a = a.detach().reshape(n, -1, h, w).contiguous(
            memory_format=torch.channels_last).view(a.shape)
    return x.detach().requires_grad_(), a.detach().requires_grad_()


def outputs_and_grads(fn, x, a, kw):
    out = fn(x, a, **kw)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return (out, ) + torch.autograd.grad(out, (x, a), grad)


def max_errors(dtype) -> list:
    """Per case, the largest error of the output and both gradients against
    the reference, relative to the reference's largest magnitude."""
    errors = []
    for (shape, window), layout in itertools.product(CASES, LAYOUTS):
        x, a, kw = make_inputs(shape, window, dtype)
        got = outputs_and_grads(local_aggregation, *in_layout(x, a, layout),
                                kw)
        want = outputs_and_grads(reference, x, a, kw)
        errors.append(
            max(float((g - w).abs().max() / w.abs().max().clamp_min(1))
                for g, w in zip(got, want)))
    return errors


@requires_ext
@pytest.mark.parametrize('capability', ['default', 'avx2'])
def test_each_kernel_set_matches_the_reference(capability):
    """ATEN_CPU_CAPABILITY chooses the set, as it does torch's kernels
    (the CPU's own capability caps it); both give the reference's values."""
    script = ('import json, torch, mmcot._ext\n'
              'from tests.test_ops.test_cpu_kernels import max_errors\n'
              'torch.set_num_threads(2)\n'
              'print(json.dumps(dict(\n'
              '    kernels=mmcot._ext.cpu_kernels(),\n'
              '    capability=torch.backends.cpu.get_cpu_capability(),\n'
              '    float32=max_errors(torch.float32),\n'
              '    float64=max_errors(torch.float64))))\n')
    repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    run = subprocess.run([sys.executable, '-c', script],
                         cwd=repo,
                         capture_output=True,
                         text=True,
                         timeout=600,
                         env=dict(os.environ, ATEN_CPU_CAPABILITY=capability))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.splitlines()[-1])
    expected = ('avx2' if result['capability'] in ('AVX2', 'AVX512')
                and platform.machine() == 'x86_64' else 'default')
    assert result['kernels'] == expected
    if capability == 'avx2' and platform.machine() == 'x86_64':
        assert result['kernels'] == 'avx2', 'this CPU has no AVX2'
    assert max(result['float32']) < 1e-5
    assert max(result['float64']) < 1e-12


@requires_ext
def test_any_number_of_threads_gives_the_same_bits():
    """Tasks split the weight groups (channels-last: the rows) by the thread
    count; every sum still runs in one fixed order."""
    threads = torch.get_num_threads()
    try:
        for (shape, window), layout in itertools.product(CASES, LAYOUTS):
            x, a, kw = make_inputs(shape, window, torch.float32)
            x, a = in_layout(x, a, layout)
            runs = []
            for count in (1, 2, 3, 5):
                torch.set_num_threads(count)
                runs.append(outputs_and_grads(local_aggregation, x, a, kw))
            for run in runs[1:]:
                for got, first in zip(run, runs[0]):
                    assert torch.equal(got, first)
    finally:
        torch.set_num_threads(threads)
