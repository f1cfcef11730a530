"""Interrupted runs: atomic checkpoint files, --resume that falls back to
the newest intact checkpoint, and the demo killed (SIGKILL) during an
iteration, a validation and a checkpoint save, resumed each time to the
state of an uninterrupted run."""
import glob
import os
import os.path as osp
import shutil
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get_file_backend

from mmcot.engine import (AtomicLocalBackend, CheckpointError,
                          interrupted_runs, load_local_checkpoint,
                          resume_checkpoint, use_atomic_checkpoints)

from ..conftest import REPO, free_port, run_tool
from ..test_tools.test_train_test_tools import (DEMO, assert_same_state,
                                                demo_options)
from .toy_runner import ToyDataset, train_toy_runner


def test_atomic_backend_keeps_the_old_file_on_a_failed_write(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    path = tmp_path / 'sub' / 'epoch_1.pth'
    backend.put(b'old', str(path))
    with pytest.raises(TypeError):
        backend.put('not bytes', str(path))
    assert path.read_bytes() == b'old'
    backend.put_text('epoch_1.pth', str(tmp_path / 'last_checkpoint'))
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint', 'sub']
    assert os.listdir(tmp_path / 'sub') == ['epoch_1.pth']


class _RisingAccuracy(BaseMetric):
    """Accuracy 1, 2, 3, ... at each validation: every epoch a new best."""

    def __init__(self):
        super().__init__()
        self.validations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.validations += 1
        return dict(acc=float(self.validations))


def train_saving_the_best(work_dir, epochs):
    train_toy_runner(
        str(work_dir), epochs, custom_hooks=[],
        val_dataloader=dict(dataset=ToyDataset(),
                            sampler=dict(type='DefaultSampler',
                                         shuffle=False),
                            batch_size=8,
                            collate_fn=dict(type='default_collate')),
        val_evaluator=[_RisingAccuracy()], val_cfg=dict(),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=1, save_best='acc',
            rule='greater', backend_args=dict(backend='atomic_local'))))
    return sorted(glob.glob1(str(work_dir), 'best_*.pth'))


def test_a_new_best_checkpoint_replaces_the_old_one(tmp_path):
    assert train_saving_the_best(tmp_path, 3) == ['best_acc_epoch_3.pth']


def test_failed_write_of_a_best_checkpoint_keeps_the_previous(
        tmp_path, monkeypatch):
    """MMEngine's hook removes the previous best before it writes the new
    one: a write that fails (a full disk) must not leave the run without
    a best checkpoint."""
    put = AtomicLocalBackend.put

    def disk_full_at_epoch_2(self, obj, filepath):
        if osp.basename(filepath) == 'best_acc_epoch_2.pth':
            raise OSError(28, 'No space left on device')
        return put(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', disk_full_at_epoch_2)
    with pytest.raises(OSError, match='No space left'):
        train_saving_the_best(tmp_path, 3)
    assert glob.glob1(str(tmp_path), 'best_*.pth') == ['best_acc_epoch_1.pth']
    checkpoint = load_local_checkpoint(str(tmp_path / 'best_acc_epoch_1.pth'))
    assert checkpoint['meta']['epoch'] == 1


@pytest.mark.parametrize('hook, expected', [
    (dict(type='CheckpointHook'), dict(backend='atomic_local')),
    (dict(type='CheckpointHook', backend_args=dict(backend='local')),
     dict(backend='local')),
    (dict(type='CheckpointHook', out_dir='s3://bucket/run'), None),
])
def test_use_atomic_checkpoints(hook, expected):
    cfg = Config(dict(work_dir='work_dirs/x', default_hooks=dict(
        checkpoint=hook)))
    use_atomic_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint.get('backend_args') == expected


def save(path, epoch):
    torch.save({'state_dict': {'w': torch.full((4, ), float(epoch))},
                'meta': {'epoch': epoch}}, path)


def truncate(path):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def point(work_dir, name):
    (work_dir / 'last_checkpoint').write_text(str(work_dir / name))


def test_resume_takes_what_last_checkpoint_names(tmp_path):
    for epoch in (1, 2, 3):
        save(tmp_path / f'epoch_{epoch}.pth', epoch)
    point(tmp_path, 'epoch_2.pth')
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')


def test_resume_falls_back_to_the_newest_intact_checkpoint(
        tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(interrupted_runs, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    for epoch in (2, 9, 10, 11):
        save(tmp_path / f'epoch_{epoch}.pth', epoch)
    truncate(tmp_path / 'epoch_11.pth')
    truncate(tmp_path / 'epoch_10.pth')
    point(tmp_path, 'epoch_11.pth')
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_9.pth')
    assert len(logged) == 2
    assert f'names {tmp_path / "epoch_11.pth"}, which cannot be resumed' in (
        logged[0])
    assert 'truncated' in logged[0] or 'central directory' in logged[0]
    assert logged[1].startswith(
        f'resuming from {tmp_path / "epoch_9.pth"}, the newest intact '
        f'checkpoint (skipped: {tmp_path / "epoch_10.pth"} (')


@pytest.mark.parametrize('pointer', [
    b'\xff\xfe\x00epoch_9.pth',  # not UTF-8
    b'epoch_9\x00.pth',  # a NUL in the path
    b'x' * 100_000,  # a name far too long, shown cut
])
def test_resume_survives_a_damaged_last_checkpoint(tmp_path, monkeypatch,
                                                   pointer):
    logged = []
    monkeypatch.setattr(interrupted_runs, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    save(tmp_path / 'epoch_9.pth', 9)
    (tmp_path / 'last_checkpoint').write_bytes(pointer)
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_9.pth')
    assert 'cannot be resumed from' in logged[0]
    assert len(logged[0]) < 2000


def test_resume_without_last_checkpoint(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(interrupted_runs, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    assert resume_checkpoint(str(tmp_path)) is None
    save(tmp_path / 'iter_100.pth', 1)
    save(tmp_path / 'iter_20.pth', 1)
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_100.pth')
    assert logged == []
    truncate(tmp_path / 'iter_100.pth')  # skipped, and the log says so
    assert resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_20.pth')
    assert len(logged) == 1 and logged[0].startswith(
        f'resuming from {tmp_path / "iter_20.pth"}, the newest intact '
        f'checkpoint (skipped: {tmp_path / "iter_100.pth"}')


def test_resume_with_nothing_intact_stops(tmp_path):
    save(tmp_path / 'epoch_1.pth', 1)
    truncate(tmp_path / 'epoch_1.pth')
    (tmp_path / 'epoch_2.pth').write_bytes(b'')
    point(tmp_path, 'epoch_2.pth')
    with pytest.raises(CheckpointError, match='no intact checkpoint') as e:
        resume_checkpoint(str(tmp_path))
    assert 'epoch_1.pth' in str(e.value) and 'epoch_2.pth' in str(e.value)


@pytest.fixture(scope='module')
def demo_config(tmp_path_factory):
    """The demo with an EMA hook (which resume must restore too)."""
    config = tmp_path_factory.mktemp('config') / 'demo_ema.py'
    config.write_text(
        f'_base_ = {osp.join(REPO, DEMO)!r}\n'
        "custom_imports = dict(imports=['mmcot', "
        "'tests.test_engine.kill_points'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='EMAHook', momentum=0.01)]\n")
    return str(config)


def train(config, data_root, work_dir, epochs, *extra, check=True):
    return run_tool(
        'tools/train.py', config, '--work-dir', work_dir, *extra,
        *demo_options(data_root, epochs=epochs,
                      **{'train_dataloader.num_workers': 1}),
        check=check)


@pytest.fixture(scope='module')
def straight(demo_config, shapes_cls, tmp_path_factory):
    """Three epochs, uninterrupted: the work dir."""
    work_dir = str(tmp_path_factory.mktemp('straight'))
    train(demo_config, shapes_cls, work_dir, 3)
    return work_dir


@pytest.mark.parametrize('kill, last', [
    (dict(point='train_iter', epoch=2, iteration=3), 'epoch_1.pth'),
    (dict(point='val', epoch=2), 'epoch_2.pth'),
    (dict(point='save', epoch=2), 'epoch_1.pth'),
])
def test_killed_run_resumes_to_the_same_state(demo_config, shapes_cls,
                                              straight, tmp_path, kill, last):
    work_dir = str(tmp_path)
    killer = ', '.join(f'{k}={v!r}' for k, v in kill.items())
    config = tmp_path / 'killed.py'
    config.write_text(f'_base_ = {demo_config!r}\n'
                      "custom_hooks = [dict(type='EMAHook', momentum=0.01), "
                      f"dict(type='KillAt', {killer})]\n")
    result = train(str(config), shapes_cls, work_dir, 3, check=False)
    assert result.returncode == -9, result.stderr[-2000:]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert osp.basename(f.read().strip()) == last
    assert not osp.exists(osp.join(work_dir, 'epoch_3.pth'))
    # every checkpoint the kill left loads
    for name in os.listdir(work_dir):
        if name.endswith('.pth'):
            load_local_checkpoint(osp.join(work_dir, name))
    result = train(demo_config, shapes_cls, work_dir, 3, '--resume')
    epoch = int(last[len('epoch_'):-len('.pth')])
    assert f'resumed epoch: {epoch}' in result.stdout + result.stderr
    assert_same_state(
        load_local_checkpoint(osp.join(straight, 'epoch_3.pth')),
        load_local_checkpoint(osp.join(work_dir, 'epoch_3.pth')))


def test_truncated_last_checkpoint_resumes_from_the_previous(
        demo_config, shapes_cls, straight, tmp_path):
    """What a kill during MMEngine's own (in-place) save leaves: the file
    last_checkpoint names cut short."""
    work_dir = str(tmp_path / 'run')
    os.makedirs(work_dir)
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        shutil.copy(osp.join(straight, name), work_dir)
    truncate(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'epoch_2.pth'))
    result = train(demo_config, shapes_cls, work_dir, 3, '--resume')
    log = result.stdout + result.stderr
    assert (f'names {osp.join(work_dir, "epoch_2.pth")}, which cannot be '
            'resumed from') in log
    assert 'resumed epoch: 1' in log
    assert_same_state(
        load_local_checkpoint(osp.join(straight, 'epoch_3.pth')),
        load_local_checkpoint(osp.join(work_dir, 'epoch_3.pth')))


def test_nothing_intact_is_one_error_line(demo_config, shapes_cls,
                                          tmp_path):
    (tmp_path / 'epoch_1.pth').write_bytes(b'PK\x03\x04 cut')
    point(tmp_path, 'epoch_1.pth')
    result = train(demo_config, shapes_cls, str(tmp_path), 3, '--resume',
                   check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith('error: --resume: no intact checkpoint in')
    assert 'Traceback' not in result.stderr


def test_two_process_run_with_a_killed_rank_ends_and_resumes(
        demo_config, shapes_cls, tmp_path):
    """Rank 1 killed in the second epoch: the launcher ends rank 0 too
    (bounded by the timeout, no hang), and the run resumes from epoch 1."""
    config = tmp_path / 'killed.py'
    config.write_text(f'_base_ = {demo_config!r}\n'
                      "custom_hooks = [dict(type='EMAHook', momentum=0.01), "
                      "dict(type='KillAt', point='train_iter', epoch=2, "
                      'iteration=2, rank=1)]\n')
    work_dir = str(tmp_path / 'run')

    def dist_train(config, *extra, check=True):
        return run_tool(
            'tools/dist_train.sh', config, '2', '--work-dir', work_dir,
            *extra, *demo_options(shapes_cls, epochs=3),
            env={'PORT': free_port(), 'OMP_NUM_THREADS': '1'},
            timeout=300, check=check)

    start = time.monotonic()
    result = dist_train(str(config), check=False)
    assert result.returncode != 0
    assert time.monotonic() - start < 120
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    result = dist_train(demo_config, '--resume')
    assert 'resumed epoch: 1' in result.stdout + result.stderr
    assert load_local_checkpoint(osp.join(work_dir,
                                          'epoch_3.pth'))['meta']['epoch'] == 3


CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', '*', '*.py')))


def test_every_config_writes_checkpoints_atomically():
    """Whatever launches them (tools/train.py, mim, a user's script), the
    configs' checkpoint hook writes through the atomic backend."""
    assert len(CONFIGS) >= 46
    for path in CONFIGS:
        hook = Config.fromfile(path).default_hooks.checkpoint
        assert hook.backend_args == dict(backend='atomic_local'), path
