"""tools/train.py, tools/test.py and tools/dist_train.sh on the
classification demo, through MMEngine's runner, as a user runs them."""
import json
import os
import os.path as osp
import pickle

import pytest
import torch

from mmcot.engine import load_local_checkpoint

from ..conftest import MIM, REPO, free_port, needs_mim, run_tool

DEMO = 'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py'


def demo_options(data_root, epochs=2, **extra):
    """--cfg-options for a short, deterministic demo run on ``data_root``."""
    options = {
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_dataloader.batch_size': 8,
        'train_dataloader.num_workers': 0,
        'val_dataloader.num_workers': 0,
        'test_dataloader.num_workers': 0,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': 5,
        'default_hooks.logger.interval': 1,
        'randomness.deterministic': True,
    }
    options.update(extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def scalars(work_dir):
    """The JSON lines MMEngine's LocalVisBackend logged for a run."""
    [run] = [d for d in sorted(os.listdir(work_dir))
             if osp.isdir(osp.join(work_dir, d)) and d[:1].isdigit()]
    path = osp.join(work_dir, run, 'vis_data', 'scalars.json')
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def trained(shapes_cls, tmp_path_factory):
    """Two epochs of the demo: its work dir."""
    work_dir = str(tmp_path_factory.mktemp('demo'))
    run_tool('tools/train.py', DEMO, '--work-dir', work_dir,
             *demo_options(shapes_cls))
    return work_dir


def test_demo_trains_evaluates_and_saves(trained):
    assert osp.isfile(osp.join(trained, 'epoch_2.pth'))
    logged = scalars(trained)
    losses = [r['loss'] for r in logged if 'loss' in r]
    assert len(losses) == 2 * 6  # 48 images / batch 8, two epochs
    assert all(torch.isfinite(torch.tensor(losses)))
    accuracies = [r['accuracy/top1'] for r in logged if 'accuracy/top1' in r]
    assert len(accuracies) == 2 and all(0 <= a <= 100 for a in accuracies)


def test_runner_checkpoints_need_the_weights_only_loader(trained):
    """torch 2.14's default torch.load refuses MMEngine's checkpoints; the
    loader mmcot registers reads them without allowing arbitrary code."""
    path = osp.join(trained, 'epoch_2.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    checkpoint = load_local_checkpoint(path)
    assert checkpoint['meta']['epoch'] == 2
    assert 'optimizer' in checkpoint and 'message_hub' in checkpoint


def test_test_tool_evaluates_a_checkpoint(trained, shapes_cls, tmp_path):
    result = run_tool('tools/test.py', DEMO,
                      osp.join(trained, 'epoch_2.pth'), '--work-dir',
                      str(tmp_path), '--out', str(tmp_path / 'preds.pkl'),
                      *demo_options(shapes_cls))
    assert 'accuracy/top1' in result.stdout + result.stderr
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 6 * 4


def test_test_tool_refuses_a_checkpoint_of_another_model(
        trained, shapes_cls, tmp_path):
    result = run_tool(
        'tools/test.py', DEMO, osp.join(trained, 'epoch_2.pth'),
        '--work-dir', str(tmp_path), *demo_options(shapes_cls),
        'model.backbone.base_channels=32', 'model.head.in_channels=1024',
        check=False)
    assert result.returncode != 0
    assert 'do not match' in result.stderr
    assert 'backbone.layer1.0.conv1.weight: (16, 16, 1, 1) != (32, 16, 1, 1)' in (
        result.stderr)


def test_missing_data_root_fails_at_once(tmp_path):
    missing = str(tmp_path / 'nowhere')
    result = run_tool('tools/train.py', DEMO, '--work-dir', str(tmp_path),
                      *demo_options(missing), check=False)
    assert result.returncode != 0
    assert (f"train_dataloader.dataset.data_root is '{missing}', which is "
            'not a folder') in result.stderr
    assert not osp.exists(osp.join(tmp_path, 'epoch_1.pth'))


def test_bad_config_key_fails_at_once(shapes_cls, tmp_path):
    result = run_tool('tools/train.py', DEMO, '--work-dir', str(tmp_path),
                      *demo_options(shapes_cls), 'model.backbone.depht=50',
                      check=False)
    assert result.returncode != 0
    assert "unexpected keyword argument 'depht'" in result.stderr


def assert_same_state(a, b):
    for key in ('state_dict', 'ema_state_dict'):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    ma, mb = a['optimizer']['state'], b['optimizer']['state']
    assert ma.keys() == mb.keys()
    for index in ma:
        assert torch.equal(ma[index]['exp_avg'], mb[index]['exp_avg'])
        assert torch.equal(ma[index]['exp_avg_sq'], mb[index]['exp_avg_sq'])
    assert a['param_schedulers'] == b['param_schedulers']
    assert a['meta']['epoch'] == b['meta']['epoch']
    assert a['meta']['iter'] == b['meta']['iter']


def test_resume_continues_exactly(shapes_cls, tmp_path):
    """An interrupted run resumed with --resume ends in the same state as an
    uninterrupted one: weights, EMA, optimizer, schedulers, counters.

    A data worker (re-seeded every epoch) keeps the random flips of each
    epoch the same in both runs.
    """
    config = tmp_path / 'demo_ema.py'
    config.write_text(
        f'_base_ = {osp.join(REPO, DEMO)!r}\n'
        "custom_hooks = [dict(type='EMAHook', momentum=0.01)]\n")
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')

    def options(epochs):
        return demo_options(
            shapes_cls, epochs=epochs, **{'train_dataloader.num_workers': 1})

    run_tool('tools/train.py', str(config), '--work-dir', straight,
             *options(3))
    # the same run, stopped after its second epoch ...
    run_tool('tools/train.py', str(config), '--work-dir', resumed,
             *options(2))
    # ... then resumed from its last checkpoint up to the third
    result = run_tool('tools/train.py', str(config), '--work-dir', resumed,
                      '--resume', *options(3))
    assert 'resumed epoch: 2' in result.stdout + result.stderr
    assert_same_state(
        load_local_checkpoint(osp.join(straight, 'epoch_3.pth')),
        load_local_checkpoint(osp.join(resumed, 'epoch_3.pth')))


def test_two_process_distributed_run(shapes_cls, tmp_path):
    """tools/dist_train.sh with two processes (gloo on a CPU)."""
    result = run_tool(
        'tools/dist_train.sh', DEMO, '2', '--work-dir', str(tmp_path),
        *demo_options(shapes_cls, epochs=1),
        env={'PORT': free_port(), 'OMP_NUM_THREADS': '1'})
    log = result.stdout + result.stderr
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    logged = scalars(str(tmp_path))
    # 48 images over 2 processes at 8 per process: 3 iterations an epoch
    assert [r['iter'] for r in logged if 'loss' in r] == [1, 2, 3]


@needs_mim
def test_mim_train_mmpretrain(shapes_cls, tmp_path):
    """``mim train mmpretrain <config>`` runs mmpretrain's own train.py,
    which finds the CoT backbone through the config's custom_imports."""
    # mmpretrain's train.py turns persistent workers on: they need workers
    options = demo_options(
        shapes_cls,
        epochs=1,
        **{
            'train_dataloader.persistent_workers': False,
            'val_dataloader.persistent_workers': False
        })
    result = run_tool(MIM, 'train', 'mmpretrain', DEMO, '--work-dir',
                      str(tmp_path), *options)
    assert 'Training finished successfully' in result.stdout
    assert osp.isfile(tmp_path / 'epoch_1.pth')
