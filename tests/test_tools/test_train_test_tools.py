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
from .conftest import DEMO, demo_options, scalars


def test_demo_trains_evaluates_and_saves(trained):
    assert osp.isfile(osp.join(trained, 'epoch_2.pth'))
    logged = scalars(trained)
    losses = [r['loss'] for r in logged if 'loss' in r]
    assert len(losses) == 2 * 6  # 48 images / batch 8, two epochs
    assert all(torch.isfinite(torch.tensor(losses)))
    accuracies = [r['accuracy/top1'] for r in logged if 'accuracy/top1' in r]
    # one validation an epoch, each a count of the 24 images right
    assert len(accuracies) == 2
    for accuracy in accuracies:
        assert accuracy * 24 / 100 == pytest.approx(round(accuracy * 24 / 100))


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
    """The predictions it saves are the 24 val images, and their accuracy
    is the one the run logged when it validated the checkpoint."""
    run_tool('tools/test.py', DEMO, osp.join(trained, 'epoch_2.pth'),
             '--work-dir', str(tmp_path), '--out',
             str(tmp_path / 'preds.pkl'), *demo_options(shapes_cls))
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 6 * 4
    right = sum(int(p['pred_label']) == int(p['gt_label'])
                for p in predictions)
    logged = [r['accuracy/top1'] for r in scalars(trained)
              if 'accuracy/top1' in r]
    assert 100 * right / 24 == pytest.approx(logged[-1])


def test_test_tool_refuses_a_checkpoint_of_another_model(
        trained, shapes_cls, tmp_path):
    result = run_tool(
        'tools/test.py', DEMO, osp.join(trained, 'epoch_2.pth'),
        '--work-dir', str(tmp_path), *demo_options(shapes_cls),
        'model.backbone.base_channels=32', 'model.head.in_channels=1024',
        check=False)
    assert result.returncode != 0
    assert 'do not match' in result.stderr
    mismatch = ('backbone.layer1.0.conv1.weight: '
                '(16, 16, 1, 1) != (32, 16, 1, 1)')
    assert mismatch in result.stderr


def test_test_tool_refuses_a_checkpoint_without_a_state_dict(
        shapes_cls, tmp_path):
    """A file that loads (a list) but holds no state dict: one ``error:``
    line naming it, not an AttributeError from the strict check."""
    path = tmp_path / 'list.pth'
    torch.save([1, 2], path)
    result = run_tool('tools/test.py', DEMO, str(path), '--work-dir',
                      str(tmp_path / 'work'), *demo_options(shapes_cls),
                      check=False)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert errors[0] == (f'error: checkpoint {path} holds a list, not the '
                         'dict of a checkpoint (a state dict, or one under '
                         '"state_dict")')


def test_train_tool_refuses_to_resume_from_a_list(shapes_cls, tmp_path):
    """--resume FILE of a list: MMEngine's resume indexed it as a dict
    (AttributeError); now one ``error:`` line naming it."""
    path = tmp_path / 'list.pth'
    torch.save([1, 2], path)
    result = run_tool('tools/train.py', DEMO, '--resume', str(path),
                      '--work-dir', str(tmp_path / 'work'),
                      *demo_options(shapes_cls), check=False)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f'error: checkpoint {path} holds a list, not the dict of a '
        'checkpoint (a state dict, or one under "state_dict")')


@pytest.mark.parametrize('content, said', [
    ({'state_dict': [1]}, 'holds a list under "state_dict", not a state dict'),
    ({'state_dict': {1: torch.zeros(1)}},
     "has a key of type int in 'state_dict', not str"),
    ({'meta': {}, 'state_dict': {'backbone.conv1.weight': torch.zeros(1)}},
     'do not match'),
])
def test_tools_end_on_a_state_dict_error_with_an_error_line(
        content, said, tmp_path):
    """exit_on_file_errors (tools/train.py, tools/test.py, pytorch2onnx)
    turns the StateDictError of a checkpoint the user named (through the
    strict check or a Pretrained init_cfg) into ``error: ...``."""
    from mmcot.engine import check_checkpoint_matches, exit_on_file_errors
    from mmcot.models import CoTNet
    path = str(tmp_path / 'crafted.pth')
    torch.save(content, path)
    model = CoTNet(depth=50, stage_blocks=(1, 1, 1, 1))
    with pytest.raises(SystemExit) as exit:
        exit_on_file_errors(lambda: check_checkpoint_matches(model, path))
    assert str(exit.value.code).startswith(f'error: checkpoint {path} ')
    assert said in str(exit.value.code)


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


def test_test_tool_draws_every_interval_th_image(trained, shapes_cls,
                                                 tmp_path):
    show_dir = tmp_path / 'drawn'
    run_tool('tools/test.py', DEMO, osp.join(trained, 'epoch_2.pth'),
             '--work-dir', str(tmp_path / 'work'), '--show-dir',
             str(show_dir), '--interval', '5', *demo_options(shapes_cls))
    import mmcv
    from mmpretrain.datasets import CustomDataset
    val = CustomDataset(data_root=shapes_cls, data_prefix='val')
    expected = []
    for index in range(0, len(val), 5):  # 24 images: 0, 5, ... 20
        name = osp.splitext(osp.basename(val.get_data_info(index)['img_path']))
        expected.append(f'{index:06d}_{name[0]}.png')
    # the class folders hold files of the same names: none overwritten
    assert sorted(os.listdir(show_dir)) == expected
    for name in expected:
        image = mmcv.imread(str(show_dir / name))
        assert image is not None and min(image.shape[:2]) >= 64


def test_test_tool_tta_averages_the_flipped_scores(trained, shapes_cls,
                                                   tmp_path):
    """--tta: each image's score is the mean of the model's scores on the
    image and on its horizontal flip, computed here with the inferencer."""
    import mmcv
    from mmpretrain.apis import ImageClassificationInferencer
    checkpoint = osp.join(trained, 'epoch_2.pth')
    run_tool('tools/test.py', DEMO, checkpoint, '--work-dir', str(tmp_path),
             '--tta', '--out', str(tmp_path / 'tta.pkl'),
             *demo_options(shapes_cls))
    with open(tmp_path / 'tta.pkl', 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 24
    from mmengine.registry import DefaultScope

    # mmpretrain's inferencer builds its pipeline in the current default
    # scope, which another test of the session may have set to mmdet's
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        inferencer = ImageClassificationInferencer(
            osp.join(REPO, DEMO), pretrained=checkpoint, device='cpu')
    for prediction in predictions[::7]:
        image = mmcv.imread(prediction['img_path'])
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            plain, flipped = inferencer([image, mmcv.imflip(image)])
        expected = (torch.tensor(plain['pred_scores']) +
                    torch.tensor(flipped['pred_scores'])) / 2
        torch.testing.assert_close(
            prediction['pred_score'], expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(
            torch.tensor(plain['pred_scores']), expected, atol=1e-5)


def test_test_tool_saves_metrics_or_predictions(trained, shapes_cls,
                                                tmp_path):
    """--out-item metrics writes the metrics; the top-1 accuracy it holds is
    the one the saved predictions give."""
    checkpoint = osp.join(trained, 'epoch_2.pth')
    run_tool('tools/test.py', DEMO, checkpoint, '--work-dir', str(tmp_path),
             '--out', str(tmp_path / 'preds.pkl'), '--out-item', 'pred',
             *demo_options(shapes_cls))
    run_tool('tools/test.py', DEMO, checkpoint, '--work-dir', str(tmp_path),
             '--out', str(tmp_path / 'metrics.json'), '--out-item',
             'metrics', *demo_options(shapes_cls))
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    with open(tmp_path / 'metrics.json') as f:
        metrics = json.load(f)
    correct = [int(p['pred_label']) == int(p['gt_label'])
               for p in predictions]
    assert metrics['accuracy/top1'] == pytest.approx(
        100 * sum(correct) / len(correct))
    # no temporary file left beside them
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]


def test_test_tool_failure_keeps_the_previous_output(trained, shapes_cls,
                                                     tmp_path):
    """A run that fails after it started leaves the file --out names as it
    was, and no partial file beside it."""
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'preds.pkl').write_bytes(b'an earlier result')
    result = run_tool('tools/test.py', DEMO, osp.join(trained, 'epoch_2.pth'),
                      '--work-dir', str(tmp_path / 'work'), '--out',
                      str(out / 'preds.pkl'), *demo_options(shapes_cls),
                      'test_dataloader.dataset.data_prefix=missing',
                      check=False)
    assert result.returncode != 0
    assert os.listdir(out) == ['preds.pkl']
    assert (out / 'preds.pkl').read_bytes() == b'an earlier result'


@pytest.mark.parametrize('options, message', [
    (['--out-item', 'metrics'], 'error: --out-item needs --out FILE'),
    (['--out', 'preds.txt'], 'predictions are written to a file ending with'),
    (['--out', 'm.csv', '--out-item', 'metrics'], '.json, .yaml, .yml'),
    (['--out', 'no/such/folder/preds.pkl'], 'does not exist'),
    (['--show'], 'error: --show opens a window'),
])
def test_test_tool_refuses_bad_options_at_once(options, message, tmp_path):
    result = run_tool('tools/test.py', DEMO, 'unused.pth', '--work-dir',
                      str(tmp_path), *options, check=False,
                      env={'DISPLAY': '', 'WAYLAND_DISPLAY': ''})
    assert result.returncode == 2
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert os.listdir(tmp_path) == []
