"""tools/analysis/benchmark.py, the timing helper behind its ratios, and
the op shapes benchmark_op.py times."""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import threading

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmcot.analysis import (interleaved_median_ms, interleaved_times_ms,
                            markdown_table, median_ms, run_isolated,
                            speed_ratio, timing)
from mmcot.models.layers import CoTLayer

from ..conftest import REPO, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
import benchmark  # noqa: E402
import benchmark_op  # noqa: E402


class FakeClock:
    """perf_counter for the helpers: each call to a timed function advances
    it by that function's next duration, in seconds."""

    def __init__(self):
        self.now = 0.
        self.calls = []

    def function(self, name, durations_ms):
        durations = iter(durations_ms)

        def fn():
            self.calls.append(name)
            self.now += next(durations) / 1e3

        return fn

    def perf_counter(self):
        return self.now


def _exit_at_once():
    os._exit(3)


def _unpicklable_result():
    return threading.Lock()


def _fails():
    raise ValueError('in the child')


def test_isolated_run_reports_what_ends_its_child():
    """A child that dies (killed, out of memory) or whose result cannot be
    sent back is an error, not a parent waiting for ever."""
    assert run_isolated(sum, [1, 2]) == 3
    with pytest.raises(RuntimeError, match=r'_exit_at_once ended \(exit '
                       r'code 3\) without a result'):
        run_isolated(_exit_at_once)
    with pytest.raises(RuntimeError, match='TypeError: cannot pickle'):
        run_isolated(_unpicklable_result)
    with pytest.raises(RuntimeError, match='ValueError: in the child'):
        run_isolated(_fails)


def test_interleaved_median_takes_turns(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing.time, 'perf_counter', clock.perf_counter)
    fns = {
        # one warm-up call, then three timed ones
        'a': clock.function('a', [100, 1, 5, 3]),
        'b': clock.function('b', [100, 20, 10, 40]),
    }
    medians = interleaved_median_ms(fns, 'cpu', warmup=1, repeats=3)
    assert clock.calls == ['a', 'b'] * 4
    assert medians == pytest.approx({'a': 3., 'b': 20.})
    befores = []
    single = clock.function('c', [7, 9, 8])
    assert median_ms(single, 'cpu', 0, 3,
                     before=lambda: befores.append(1)) == pytest.approx(8.)
    assert len(befores) == 3


def test_per_round_ratios_and_their_quartiles(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing.time, 'perf_counter', clock.perf_counter)
    fns = {'ref': clock.function('ref', [10, 10, 10, 10]),
           'model': clock.function('model', [10, 20, 5, 10])}
    rounds = interleaved_times_ms(fns, 'cpu', warmup=0, repeats=4)
    assert rounds == {'ref': pytest.approx([10.] * 4),
                      'model': pytest.approx([10., 20., 5., 10.])}
    # medians 10 and 10; ratios 1, 0.5, 2, 1; sorted 0.5 1 1 2: quartiles
    # at positions 0.75 and 2.25 of 0..3, interpolated
    ratio, quartiles = speed_ratio(rounds['ref'], rounds['model'])
    assert ratio == pytest.approx(1.)
    assert quartiles == pytest.approx([0.875, 1.25])
    assert speed_ratio([6.], [3.]) == (2., [2., 2.])
    # the ratio of the medians (8 / 3), not the median ratio (2, 2, 10)
    assert speed_ratio([4., 8., 30.], [2., 4., 3.])[0] == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match='same rounds'):
        speed_ratio([1., 2.], [1.])
    table = markdown_table([dict(model='m', ratio=0.5, iqr=[0.875, 1.25])])
    assert table.splitlines()[-1] == '| m | 0.50 | 0.88-1.25 |'


def test_device_name_says_which_cpu(tmp_path, monkeypatch):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: Acme\n'
                       'model name\t: Acme Vector 9000 16-Core\n'
                       'flags\t\t: fpu sse avx2\n')
    assert timing.cpu_model(str(cpuinfo)) == 'Acme Vector 9000 16-Core'
    monkeypatch.setattr(timing.platform, 'processor', lambda: '')
    assert timing.cpu_model(str(tmp_path / 'missing')) == 'CPU'
    monkeypatch.setattr(timing, 'cpu_model', lambda: 'Acme Vector')
    monkeypatch.setattr(timing.torch.backends.cpu, 'get_cpu_capability',
                        lambda: 'AVX512')
    name = timing.device_name('cpu')
    threads = torch.get_num_threads()
    assert name.startswith(f'Acme Vector ({threads} threads, torch AVX512')


def test_copy_bandwidth_times_a_copy_into_one_buffer(monkeypatch):
    """The timed call copies into a destination allocated once: a fresh
    one per call would time the allocator's page faults too."""
    destinations = []

    def fake_median_ms(fn, device, warmup, repeats, before=None):
        for _ in range(3):
            out = fn()
            destinations.append(out.data_ptr())
            assert bool((out == 1).all())
        return 0.5

    monkeypatch.setattr(timing, 'median_ms', fake_median_ms)
    gbps = timing.copy_bandwidth_gbps('cpu', mib=2)
    assert len(set(destinations)) == 1
    # 2 MiB read and 2 MiB written in 0.5 ms
    assert gbps == pytest.approx(2 * 2 * 2**20 / 0.5e-3 / 1e9)


#: prints the minor page faults of filling a 64 MiB tensor allocated after
#: three of the same size were filled and freed (a timed call after its
#: warm-up), with reuse_freed_cpu_memory first if argv[1] is 1
LATER_ALLOCATION = """
import resource, sys, torch
from mmcot.analysis import reuse_freed_cpu_memory
torch.set_num_threads(1)
if sys.argv[1] == '1':
    assert reuse_freed_cpu_memory()
size = 16 * 2**20  # float32 elements: above glibc's 32 MiB mmap limit
for _ in range(3):
    torch.ones(size)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(size)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc')
def test_reused_cpu_memory_takes_no_page_faults():
    """With reuse_freed_cpu_memory (what the benchmarks' timed calls run
    under), a tensor allocated where freed ones were touches no new page:
    without it glibc maps 64 MiB afresh each time, 16384 pages of 4 KiB."""

    def page_faults(reuse):
        run = subprocess.run(
            [sys.executable, '-c', LATER_ALLOCATION,
             str(int(reuse))],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO)
        assert run.returncode == 0, run.stderr[-2000:]
        return int(run.stdout.split()[-1])

    pages = 64 * 2**20 // 4096
    assert page_faults(False) > pages // 2
    assert page_faults(True) < pages // 20


def test_benchmark_ratios_are_to_resnet50_of_the_same_run(tmp_path):
    out = tmp_path / 'bench.json'
    run_tool('tools/analysis/benchmark.py', '--models', 'CoTNet-50',
             '--batch', '1', '--train-batch', '2', '--shape', '32',
             '--det-shape', '64', '96', '--repeats', '1', '--warmup', '0',
             '--profile', '3', '--json', str(out))
    run = json.loads(out.read_text())
    assert run['setup']['interleaved'] and run['setup']['det_shape'] == [
        64, 96]
    assert run['setup']['freed_memory_reused'] is True  # glibc here
    rows = {r['model']: r for r in run['rows']}
    assert list(rows) == ['ResNet-50', 'CoTNet-50']  # the reference first
    ref, cot = rows['ResNet-50'], rows['CoTNet-50']
    assert cot['params_M'] == pytest.approx(22.222416)
    assert ref['params_M'] == pytest.approx(25.557032)
    for key in ('vs_ResNet-50', 'train_vs_ResNet-50', 'det_vs_ResNet-50'):
        assert ref[key] == 1.0
    assert cot['vs_ResNet-50'] == pytest.approx(
        cot['infer_img_per_s'] / ref['infer_img_per_s'])
    assert cot['train_vs_ResNet-50'] == pytest.approx(
        ref['train_step_ms'] / cot['train_step_ms'])
    assert cot['det_vs_ResNet-50'] == pytest.approx(
        ref['det_backbone_ms'] / cot['det_backbone_ms'])
    for key in ('vs_ResNet-50', 'train_vs_ResNet-50', 'det_vs_ResNet-50'):
        # one round: its ratio is the ratio of the medians
        assert ref[f'{key}_iqr'] == [1.0, 1.0]
        assert cot[f'{key}_iqr'] == pytest.approx([cot[key]] * 2)
    assert cot['train_peak_MiB'] > 0
    profiles = run['profiles']['fp32']
    assert list(profiles) == ['ResNet-50', 'CoTNet-50']
    for entries in profiles.values():
        assert len(entries) == 3
        shares = [entry['share'] for entry in entries]
        assert shares == sorted(shares, reverse=True)
        assert 0 < sum(shares) <= 1


def test_self_time_shares_rank_operators_by_their_own_time():
    """A matrix product of 300 x 300 (27 M multiply-adds) then an add of
    its 90 000 elements: the product first, with most of the time."""
    a = torch.randn(300, 300)

    def fn():
        torch.mm(a, a).add(1)

    shares = timing.self_time_shares(fn, 'cpu', top=10, repeats=3)
    ops = [entry['op'] for entry in shares]
    assert ops[0] == 'aten::mm' and 'aten::add' in ops
    assert shares[0]['share'] > 0.5
    times = [entry['self_ms'] for entry in shares]
    assert times == sorted(times, reverse=True)
    assert sum(entry['share'] for entry in shares) == pytest.approx(1.0)
    assert len(timing.self_time_shares(fn, 'cpu', top=1)) == 1


@pytest.mark.parametrize('memory_format,conv_layout', [
    ('contiguous', torch.contiguous_format),
    ('channels_last', torch.channels_last)])
def test_benchmark_memory_format_is_every_model_and_input(
        monkeypatch, memory_format, conv_layout):
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', '--models', 'CoTNet-50', '--shape', '32',
        '--det-shape', '64', '96', '--memory-format', memory_format
    ])
    args = benchmark.parse_args()
    runner = benchmark.ModelRunner('CoTNet-50', args, 'fp32')
    for tensor in (runner.images, runner.batch, runner.det_image,
                   runner.model.backbone.conv1.weight):
        assert tensor.is_contiguous(memory_format=conv_layout)
        assert tensor.is_contiguous() == (memory_format == 'contiguous')


def calls_of(module):
    """A list that grows by one each time ``module`` runs."""
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize('fuse', [True, False])
def test_benchmark_fuse_conv_bn_is_for_inference_only(monkeypatch, fuse):
    """--fuse-conv-bn: the inference timings run a copy with each batch
    norm that follows a conv folded into it (a CoT layer keeps the one after
    its aggregation); the training step runs the model with all of them.
    (test_backbones checks that folding keeps a CoT model's outputs.)"""
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', '--models', 'CoTNet-50', '--shape', '32',
        '--det-shape', '32', '32'
    ] + ['--fuse-conv-bn'] * fuse)
    args = benchmark.parse_args()
    for name in ('ResNet-50', 'CoTNet-50'):
        runner = benchmark.ModelRunner(name, args, 'fp32')
        if not fuse:
            assert runner.eval_model is runner.model
            continue
        norms = [m for m in runner.eval_model.modules()
                 if isinstance(m, _BatchNorm)]
        cot_norms = [m.bn for m in runner.eval_model.modules()
                     if isinstance(m, CoTLayer)]
        assert len(norms) == len(cot_norms) == (16 if 'CoT' in name else 0)
        assert all(any(n is m for m in cot_norms) for n in norms)
        assert sum(isinstance(m, _BatchNorm)
                   for m in runner.model.modules()) > 50
        fused, plain = (calls_of(runner.eval_model.backbone),
                        calls_of(runner.model.backbone))
        runner.infer()
        runner.infer_backbone()
        assert (len(fused), len(plain)) == (2, 0)
        runner.train_step()
        assert (len(fused), len(plain)) == (2, 1)


@pytest.mark.parametrize('defaults', [False, True])
def test_benchmark_keeps_freed_memory_after_the_peaks(monkeypatch, defaults):
    """The timed calls run with freed memory kept (no page faults), which
    is turned on only after the peak resident sets are measured (it would
    hide them); --malloc-defaults leaves glibc's defaults."""
    monkeypatch.setattr(sys, 'argv', [
        'benchmark.py', '--models', 'CoTNet-50', '--det-shape', '0', '0'
    ] + ['--malloc-defaults'] * defaults)
    args = benchmark.parse_args()
    events = []

    def peak(device, fn, name, *_):
        events.append(f'peak {name}')
        return dict(params_M=1.0, train_peak_MiB=1.0)

    def timed(args, dtype_name):
        events.append('timed')
        return {name: dict(infer=[2.0], train=[3.0]) for name in args.models}

    monkeypatch.setattr(benchmark, 'isolated_on_cpu', peak)
    monkeypatch.setattr(benchmark, 'measure_speed', timed)
    monkeypatch.setattr(benchmark, 'reuse_freed_cpu_memory',
                        lambda: events.append('keep freed memory') or True)
    benchmark.measure(args, 'fp32')
    assert events == ['peak ResNet-50', 'peak CoTNet-50'] + (
        [] if defaults else ['keep freed memory']) + ['timed']
    assert args.reuse_freed_memory is not defaults


@pytest.mark.parametrize('args,message', [
    (['--det-shape', '-1', '8'], '--det-shape takes two sizes'),
    (['--repeats', '0'], '--repeats must be at least 1'),
    (['--profile', '-1'], '--profile must be at least 0'),
    (['--dtypes', 'fp16'], 'measured on GPUs only'),
    (['--train-batch', '1', '--shape', '32'], 'batch norm needs more than'),
    (['--device', 'gpu'], "--device 'gpu': expected cpu, cuda or cuda:N"),
    (['--json', 'no/such/folder/b.json'], 'no/such/folder does not exist'),
])
def test_benchmark_bad_arguments(args, message):
    result = run_tool('tools/analysis/benchmark.py', *args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith('error: ') and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('model,shapes', [
    ('CoTNet-50', [(1, 64, 56), (1, 128, 28), (1, 256, 14), (1, 512, 7)]),
    # cardinality 2: each image makes two calls of half the channels
    ('CoTNeXt-50', [(2, 48, 56), (2, 96, 28), (2, 192, 14), (2, 384, 7)]),
    # CoT in res4 (every other block) and res5 only
    ('SE-CoTNetD-50', [(1, 256, 14), (1, 512, 7)]),
])
def test_op_benchmark_shapes_are_the_models(model, shapes):
    assert benchmark_op.op_shapes(model) == shapes


@pytest.mark.parametrize('defaults', [False, True])
def test_op_benchmark_keeps_freed_memory_after_the_peaks(
        monkeypatch, defaults):
    """As benchmark.py: an op case's timed calls run with freed memory kept,
    turned on after its peak memory is measured; --malloc-defaults leaves
    glibc's defaults; the result says which."""
    monkeypatch.setattr(sys, 'argv', ['benchmark_op.py'] +
                        ['--malloc-defaults'] * defaults)
    args = benchmark_op.parse_args()
    events = []

    def peak(fn, device):
        events.append('peak')
        return 1.0

    def timed(fn, x, w, args, before=None, kernels=False):
        events.append(f'timed {tuple(x.shape)}')
        return dict(forward_ms=2.0, backward_ms=3.0)

    monkeypatch.setattr(benchmark_op, 'peak_memory_mib', peak)
    monkeypatch.setattr(benchmark_op, 'directions_ms', timed)
    monkeypatch.setattr(benchmark_op, 'reuse_freed_cpu_memory',
                        lambda: events.append('keep freed memory') or True)
    result = benchmark_op.run_case('compiled', (2, 16, 4), 'float32', args)
    assert events == ['peak', 'peak'] + (
        [] if defaults else ['keep freed memory']) + [
            'timed (2, 16, 4, 4)', 'timed (1, 8, 1, 1)'
        ]
    assert result['freed_memory_reused'] is not defaults


def test_op_benchmark_measures_how_far_other_kernels_lie():
    """A build timed beside the shipped kernels (previous, variant) is
    compared with them on the same inputs: forward output and gradients."""
    x, w = benchmark_op.make_inputs(2, 16, 5, 'float32', 'cpu')
    same = benchmark_op.disagreement(benchmark_op.compiled, x, w)
    assert same == dict(forward=0.0, backward=0.0)

    def scaled(x, w):
        return benchmark_op.compiled(x, w) * 1.001

    off = benchmark_op.disagreement(scaled, x, w)
    assert off['forward'] == pytest.approx(1e-3, rel=1e-3)
    assert off['backward'] == pytest.approx(1e-3, rel=1e-3)

    def nan_corner(x, w):
        out = benchmark_op.compiled(x, w)
        return out.index_put((torch.tensor([0]), ), torch.tensor(math.nan))

    broken = benchmark_op.disagreement(nan_corner, x, w)
    assert broken['forward'] == math.inf


def test_op_benchmark_names_the_kernels_that_disagree():
    tolerance = benchmark_op.AGREEMENT_EPS * torch.finfo(torch.float16).eps
    row = dict(dtype='float16', C=64, H=56,
               forward=dict(previous_error=tolerance / 2),
               backward=dict(previous_error=tolerance * 2),
               variants=dict(strip_4=dict(
                   forward=dict(error=math.inf),
                   backward=dict(error=math.nan))))
    assert benchmark_op.disagreements([row]) == [
        f'previous backward float16 64 x 56: {tolerance * 2:.2e}',
        'variant strip_4 forward float16 64 x 56: inf',
        'variant strip_4 backward float16 64 x 56: nan',
    ]
    row['backward']['previous_error'] = 0.0
    row['variants']['strip_4'] = dict(forward=dict(error=tolerance),
                                      backward=dict(error=0.0))
    assert benchmark_op.disagreements([row]) == []


def test_op_benchmark_sets_the_op_beside_pytorch_baselines(monkeypatch):
    """The op's floor ratios and those of the copy and depthwise
    convolution baselines, each over the bytes it moves at the same
    bandwidth, and the depthwise convolution's time over the op's."""
    args = argparse.Namespace(device='cpu', batch=2, warmup=0, repeats=1,
                              reuse_freed_memory=False)
    baselines = benchmark_op.baselines_ms((2, 8, 4), 'float32', args)
    assert baselines.pop('freed_memory_reused') is False
    assert sorted(baselines) == [
        'copy_ms', 'depthwise_backward_ms', 'depthwise_backward_overhead_ms',
        'depthwise_forward_ms', 'depthwise_forward_overhead_ms'
    ]
    assert all(ms > 0 for ms in baselines.values())

    op_times = dict(forward_ms=2.0, backward_ms=4.0, forward_overhead_ms=0.5,
                    backward_overhead_ms=1.0, forward_MiB=1.0,
                    forward_backward_MiB=2.0, freed_memory_reused=True)
    monkeypatch.setattr(benchmark_op, 'IMPLS',
                        dict(compiled=None, reference=None))
    monkeypatch.setattr(benchmark_op, 'measure',
                        lambda impl, shape, dtype, args: dict(op_times))
    baselines = dict(copy_ms=1.0, depthwise_forward_ms=3.0,
                     depthwise_backward_ms=8.0,
                     depthwise_forward_overhead_ms=0.7,
                     depthwise_backward_overhead_ms=1.3,
                     freed_memory_reused=True)
    monkeypatch.setattr(benchmark_op, 'isolated_on_cpu',
                        lambda device, fn, *a: dict(baselines))
    # 2 x 16 x 4 x 4 float32 elements, 2048 bytes: 1 ms at this bandwidth
    row = benchmark_op.stage_results((1, 16, 4), 'float32', 2.048e-3, args)
    assert row['freed_memory_reused'] is True
    assert row['forward']['floor_ratio'] == pytest.approx(2.0 / 3.125)
    assert row['backward']['floor_ratio'] == pytest.approx(4.0 / 5.25)
    assert row['copy'] == dict(ms=1.0, floor_ratio=pytest.approx(0.5))
    assert row['forward']['depthwise_floor_ratio'] == pytest.approx(1.5)
    assert row['backward']['depthwise_floor_ratio'] == pytest.approx(8 / 3)
    assert row['forward']['vs_depthwise'] == pytest.approx(1.5)
    assert row['backward']['vs_depthwise'] == pytest.approx(2.0)
    assert row['forward']['depthwise_overhead_ms'] == 0.7
    assert row['backward']['depthwise_overhead_ms'] == 1.3
    # timed under other malloc settings than the op: the row says so
    baselines['freed_memory_reused'] = False
    row = benchmark_op.stage_results((1, 16, 4), 'float32', 2.048e-3, args)
    assert row['freed_memory_reused'] is False
