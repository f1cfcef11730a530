"""The offline GPU kit on a CPU: tools/gpu_check.sh runs every step at toy
sizes (so that a GPU run is not spent on the script), tools/install.sh
--wheelhouse refuses a wheelhouse that does not fit the node, and the
summary's figures follow from the measurements."""
import json
import os.path as osp
import sys

import pytest
import torch

from ..conftest import REPO, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
import gpu_check_summary  # noqa: E402


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    result = run_tool('tools/gpu_check.sh', str(out), '--cpu-smoke')
    with open(out / 'summary.json') as f:
        return result, json.load(f)


def test_gpu_check_runs_every_step_on_a_cpu(smoke):
    result, summary = smoke
    assert [(s['name'], s['ok']) for s in summary['steps']] == [
        ('tests_ops', True), ('op_benchmark', True),
        ('model_benchmark', True), ('train', True)
    ]
    assert summary['setup']['torch'] == torch.__version__
    op = summary['op_benchmark']
    assert [(r['dtype'], r['C'], r['H']) for r in op['rows']] == [
        ('float32', 64, 56), ('float32', 128, 28), ('float32', 256, 14),
        ('float32', 512, 7)
    ]
    for row in op['rows']:
        for direction in ('forward', 'backward'):
            d = row[direction]
            assert d['floor_ratio'] == pytest.approx(d['ms'] / d['floor_ms'])
            assert d['vs_reference'] == pytest.approx(d['reference_ms'] /
                                                      d['ms'])
            assert 0 < d['overhead_ms']
            assert d['net_floor_ratio'] == pytest.approx(
                max(d['ms'] - d['overhead_ms'], 0) / d['floor_ms'])
            assert d['vs_depthwise'] == pytest.approx(d['depthwise_ms'] /
                                                      d['ms'])
        assert row['copy']['ms'] > 0
    models = summary['model_benchmark']
    names = [
        'ResNet-50', 'ResNeXt-50 (32x4d)', 'ResNeSt-50', 'CoTNet-50',
        'CoTNeXt-50', 'SE-CoTNetD-50'
    ]
    assert [r['model'] for r in models['rows']] == names
    profiles = models['profiles']['fp32']
    assert list(profiles) == names
    assert all(len(entries) == 12 for entries in profiles.values())
    training = summary['training']
    assert training['iterations'] == 6  # 24 images, batch 4, one epoch
    assert training['finite']
    # the op tests ran (their CUDA cases skip on a CPU)
    assert summary['tests_ops']['tests'] > 0
    assert summary['tests_ops']['failures'] == 0
    assert 'written to' in result.stdout


@pytest.mark.parametrize('args, message', [
    ([], 'error: OUT_DIR is required'),
    (['out', '--fast'], 'error: unknown option --fast'),
])
def test_gpu_check_arguments(args, message):
    result = run_tool('tools/gpu_check.sh', *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def fake_wheelhouse(folder, python=None, torch_version=None, wheels=()):
    folder.mkdir()
    python = python or '%d.%d' % sys.version_info[:2]
    torch_version = torch_version or torch.__version__.split('+')[0]
    (folder / 'WHEELHOUSE').write_text(
        f'python {python}\ntorch {torch_version}\n')
    (folder / 'requirements.txt').write_text('mmengine==0.10.7\n')
    for wheel in wheels:
        (folder / wheel).write_bytes(b'')
    return str(folder)


@pytest.mark.parametrize('kind, message', [
    ('python', 'the wheelhouse is for Python 3.9'),
    ('torch', 'is built for torch 1.0.0'),
    ('missing', 'the wheelhouse lacks mmengine==0.10.7'),
    ('nothing', 'has no WHEELHOUSE / requirements.txt'),
])
def test_install_refuses_a_wheelhouse_that_does_not_fit(
        tmp_path, kind, message):
    folder = tmp_path / 'wheelhouse'
    if kind == 'python':
        fake_wheelhouse(folder, python='3.9')
    elif kind == 'torch':
        fake_wheelhouse(folder, torch_version='1.0.0')
    elif kind == 'missing':
        fake_wheelhouse(folder)
    else:
        folder.mkdir()
    result = run_tool(
        'tools/install.sh', '--wheelhouse', str(folder), check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.startswith('error: ')


def test_build_wheelhouse_arguments(tmp_path):
    result = run_tool('tools/build_wheelhouse.sh', check=False)
    assert result.returncode == 2 and 'error: DIR is required' in (
        result.stderr)
    result = run_tool(
        'tools/build_wheelhouse.sh', str(tmp_path), '--python', '12',
        check=False)
    assert result.returncode == 2 and '--python must look like 3.12' in (
        result.stderr)
    result = run_tool(
        'tools/build_wheelhouse.sh', str(tmp_path), '--python', '3.1',
        check=False, env={'PYTHON': ''})
    assert result.returncode == 1 and 'no Python 3.1 interpreter' in (
        result.stderr)


def test_training_verdict(tmp_path):
    path = tmp_path / 'scalars.json'
    losses = [2.0 - 0.01 * i for i in range(30)]
    path.write_text(''.join(
        json.dumps(dict(loss=x, step=i)) + '\n' for i, x in enumerate(losses)))
    training = gpu_check_summary.read_training(str(path))
    assert training['iterations'] == 30
    assert training['first_loss_mean'] == pytest.approx(sum(losses[:10]) / 10)
    assert training['last_loss_mean'] == pytest.approx(sum(losses[-10:]) / 10)
    assert training['finite'] and training['falling']
    path.write_text(
        json.dumps(dict(loss=float('nan'))) + '\n' +
        json.dumps(dict(loss=1.0)) + '\n')
    training = gpu_check_summary.read_training(str(path))
    assert not training['finite'] and not training['falling']


def test_files_of_a_killed_run_are_read_as_far_as_they_are_whole(tmp_path):
    """A step killed while writing leaves a cut JSON, XML or line: the
    summary reads what is whole, and the steps' statuses say what failed."""
    (tmp_path / 'steps.tsv').write_text('tests_ops\t0\t12\nop_benchmark\t1'
                                        '\t3\ntrain\t1')
    (tmp_path / 'op_benchmark.json').write_text('{"stages": [')
    (tmp_path / 'tests_ops.xml').write_text('<testsuite tests="3"')
    (tmp_path / 'train_scalars.json').write_text(
        json.dumps(dict(loss=2.0)) + '\n' + json.dumps(dict(loss=1.0)) +
        '\n{"loss": 0.')
    result = run_tool('tools/analysis/gpu_check_summary.py', str(tmp_path),
                      check=False)
    assert result.returncode == 1  # a step failed
    assert 'Traceback' not in result.stderr
    with open(tmp_path / 'summary.json') as f:
        summary = json.load(f)
    assert [(s['name'], s['ok']) for s in summary['steps']] == [
        ('tests_ops', True), ('op_benchmark', False)]
    assert summary['op_benchmark'] is None and summary['tests_ops'] is None
    assert summary['training']['losses'] == [2.0, 1.0]


def test_op_share_goal():
    """The op's share of a training step: its per-layer forward + backward
    times the layers per stage, over the step at the same batch."""

    def row(c, h, ms):
        return dict(
            dtype='float16',
            C=c,
            H=h,
            batch=64,
            forward=dict(ms=ms, floor_ratio=1.0, vs_reference=10.0),
            backward=dict(ms=2 * ms, floor_ratio=1.0, vs_reference=10.0))

    op = dict(rows=[row(64, 56, 0.4), row(128, 28, 0.2), row(256, 14, 0.1),
                    row(512, 7, 0.05)])
    models = dict(
        setup=dict(train_batch=64),
        rows=[
            dict(model='ResNet-50', precision='fp16', train_step_ms=100.0),
            dict(model='CoTNet-50', precision='fp16', train_step_ms=125.0)
        ])
    results = {g['goal']: g for g in gpu_check_summary.goals(op, models)}
    share = results[
        'aggregation op share of the CoTNet-50 fp16 training step']
    op_ms = 3 * (3 * 0.4 + 4 * 0.2 + 6 * 0.1 + 3 * 0.05)
    assert share['measured'] == pytest.approx(op_ms / 125.0)
    assert share['met'] is (op_ms / 125.0 <= 0.05)
    speed = results['CoTNet-50 fp16 training img/s vs ResNet-50']
    assert speed['measured'] == pytest.approx(0.8) and speed['met']


def test_op_goals_take_kernel_time_where_measured():
    """On a GPU the floor ratios and speed-ups of the goals are the kernels'
    (host overhead excluded); wall-time figures count where no kernel time
    was measured."""

    def row(c, wall, kernel=None):
        direction = dict(ms=1.0, floor_ratio=wall, vs_reference=10.0,
                         vs_previous=wall)
        if kernel is not None:
            direction.update(kernel_floor_ratio=kernel,
                             kernel_vs_previous=kernel)
        return dict(dtype='float32', C=c, H=7, batch=64, forward=direction,
                    backward=dict(direction))

    op = dict(rows=[row(64, 9.0, 1.2), row(128, 5.0), row(512, 8.0, 1.9)])
    results = {g['goal']: g['measured']
               for g in gpu_check_summary.goals(op, None)}
    assert results['op forward floor_ratio, stages 1-3 (max)'] == 5.0
    assert results['op backward floor_ratio, stage 4'] == 1.9
    assert results['op float32 speed-up over the previous kernels '
                   '(min)'] == 1.2
