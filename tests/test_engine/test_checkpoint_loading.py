"""What mmcot's checkpoint loader must still load, exactly: MMEngine runner
checkpoints (message hub, optimizer, schedulers, EMA), NumPy data of every
built-in numeric type, and resumed runs that continue bit for bit."""
import io
import os.path as osp
import subprocess
import sys
import zipfile
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mmcot.engine import (CheckpointError, load_from_local_safely,
                          load_local_checkpoint)

from ..conftest import REPO
from .toy_runner import train_toy_runner


def assert_identical(a, b, where='checkpoint'):
    """``a`` and ``b`` hold the same types, keys, values and bits."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f'{where}[{key!r}]')
        assert_identical(getattr(a, '_metadata', None),
                         getattr(b, '_metadata', None), f'{where}._metadata')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.requires_grad == b.requires_grad, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
        assert a.flags.writeable == b.flags.writeable, where
    elif isinstance(a, HistoryBuffer):
        assert a.max_length == b.max_length, where
        assert_identical(a.data, b.data, f'{where}.data')
    else:
        assert a == b or (a != a and b != b), (where, a, b)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('toy'))
    train_toy_runner(work_dir)
    return osp.join(work_dir, 'epoch_2.pth')


def test_runner_checkpoint_loads_exactly(runner_checkpoint):
    """Everything MMEngine saved, as unrestricted unpickling returns it."""
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(runner_checkpoint)  # torch's default refuses it
    loaded = load_local_checkpoint(runner_checkpoint)
    assert_identical(loaded, torch.load(runner_checkpoint, weights_only=False))
    assert set(loaded) == {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
        'ema_state_dict'
    }
    assert loaded['param_schedulers'][1]['milestones'] == Counter({1: 1})
    assert isinstance(loaded['state_dict'], OrderedDict)


def test_map_location(runner_checkpoint):
    meta = load_local_checkpoint(runner_checkpoint, map_location='meta')
    assert meta['state_dict']['net.0.weight'].device.type == 'meta'
    seen = []
    load_local_checkpoint(runner_checkpoint,
                          map_location=lambda storage, location: seen.append(
                              location) or storage)
    assert seen and set(seen) == {'cpu'}


def test_numpy_1_and_2_names_load(runner_checkpoint, tmp_path):
    """NumPy 2 pickles arrays under numpy._core, NumPy 1 under numpy.core:
    the same checkpoint loads whichever NumPy wrote it."""
    renamed = str(tmp_path / 'renamed.pth')
    names = (b'numpy.core.multiarray', b'numpy._core.multiarray')
    with zipfile.ZipFile(runner_checkpoint) as src, zipfile.ZipFile(
            renamed, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):
                written, other = names if names[0] in data else names[::-1]
                assert written in data and other not in data
                data = data.replace(written, other)
            dst.writestr(info.filename, data)
    assert_identical(
        load_local_checkpoint(renamed),
        load_local_checkpoint(runner_checkpoint))


def numpy_values():
    values = {
        code: (np.arange(6) % 3).astype(code).reshape(2, 3)
        for code in ('b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
                     'f2', 'f4', 'f8', 'c8', 'c16')
    }
    values.update({
        'big_endian':
        np.arange(5, dtype='>f4'),
        'fortran':
        np.asfortranarray(np.arange(12.).reshape(3, 4)),
        'zero_dim':
        np.array(7.5),
        'empty':
        np.zeros((0, 4), np.int32),
        'bytes':
        np.array([b'ab', b'cde'], 'S3'),
        'nan':
        np.array([np.nan, np.inf, -0.0]),
        'scalars': [
            np.float64(1.5),
            np.int64(-3),
            np.bool_(True),
            np.float32(2.25),
            np.uint8(200)
        ],
        'dtype':
        np.dtype('>i2'),
    })
    return values


def test_numpy_data_of_every_builtin_type(tmp_path):
    """Arrays, scalars and dtypes of every built-in numeric type, byte order
    and memory order come back with their bits."""
    path = str(tmp_path / 'numpy.pth')
    values = numpy_values()
    torch.save({'hub': HistoryBuffer([1.0, 2.0], [1, 1]), **values}, path)
    loaded = load_local_checkpoint(path)
    for key, value in values.items():
        assert_identical(loaded[key], value, key)
    assert loaded['fortran'].flags.f_contiguous
    assert loaded['hub'].mean() == 1.5


def test_loaded_buffers_work_in_a_fresh_process(runner_checkpoint):
    """In a process where no HistoryBuffer was made yet, a loaded buffer's
    statistics work, and the registry holds only MMEngine's built-ins."""
    script = (
        'import sys, mmcot\n'
        'from mmcot.engine import load_local_checkpoint\n'
        'from mmengine.logging.history_buffer import HistoryBuffer as H\n'
        'assert H._statistics_methods == {}\n'
        'hub = load_local_checkpoint(sys.argv[1])["message_hub"]\n'
        'loss = hub["log_scalars"]["train/loss"]\n'
        'print(loss.statistics("mean") == loss.mean(), '
        'sorted(H._statistics_methods.items()) == sorted((n, getattr(H, n)) '
        'for n in ("min", "max", "current", "mean")))\n')
    result = subprocess.run([sys.executable, '-c', script, runner_checkpoint],
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.stdout.split() == ['True', 'True'], result.stderr


def test_resume_continues_bit_for_bit(tmp_path):
    """Two epochs straight, or one then a resume from its checkpoint: the
    same weights, EMA, optimizer, schedulers and logged history.

    (A warm-up schedule only: MMEngine 0.10.7's own resume of MultiStepLR
    drifts, with or without mmcot.)"""
    straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
    warm_up = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=6)]
    train_toy_runner(straight, max_epochs=2, param_scheduler=warm_up)
    train_toy_runner(resumed, max_epochs=1, param_scheduler=warm_up)
    train_toy_runner(resumed,
                     max_epochs=2,
                     param_scheduler=warm_up,
                     load_from=osp.join(resumed, 'epoch_1.pth'),
                     resume=True)
    a = load_local_checkpoint(osp.join(straight, 'epoch_2.pth'))
    b = load_local_checkpoint(osp.join(resumed, 'epoch_2.pth'))
    for key in ('state_dict', 'ema_state_dict', 'optimizer',
                'param_schedulers'):
        assert_identical(a[key], b[key], key)
    history_a = a['message_hub']['log_scalars']
    history_b = b['message_hub']['log_scalars']
    for key in ('train/loss', 'train/lr'):
        assert_identical(history_a[key], history_b[key], key)


def test_official_training_checkpoint_with_namespace(tmp_path):
    import argparse
    path = str(tmp_path / 'official.pth.tar')
    args = argparse.Namespace(model='cotnet50',
                              lr=0.25,
                              aa=None,
                              mean=(0.485, 0.456, 0.406),
                              smoothing=0.1)
    torch.save({
        'args': args,
        'epoch': 349,
        'state_dict': {
            'w': torch.ones(2)
        }
    }, path)
    loaded = load_local_checkpoint(path)
    assert loaded['args'] == args and type(loaded['args']) is type(args)


def test_plain_state_dict_is_left_to_torch(tmp_path):
    buffer = io.BytesIO()
    torch.save({'w': torch.arange(3.)}, buffer)
    (tmp_path / 'plain.pth').write_bytes(buffer.getvalue())
    assert torch.equal(
        load_local_checkpoint(str(tmp_path / 'plain.pth'))['w'],
        torch.arange(3.))


def test_files_torch_loads_load_as_mmengine_alone_loads_them(tmp_path):
    """What MMEngine loads without mmcot (torch.load, weights only) loads
    the same with it: state dicts in the zip and the legacy format, with
    and without map_location; other schemes keep MMEngine's loaders."""
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
    state = OrderedDict(w=torch.arange(6.).view(2, 3), n=torch.tensor(3))
    state._metadata = OrderedDict({'': {'version': 2}})
    paths = []
    for legacy in (False, True):
        path = str(tmp_path / f'legacy_{legacy}.pth')
        torch.save({'state_dict': state, 'meta': {'epoch': 3}}, path,
                   _use_new_zipfile_serialization=not legacy)
        paths.append(path)
    for path in paths:
        for map_location in (None, 'cpu', lambda storage, _: storage):
            assert_identical(
                CheckpointLoader.load_checkpoint(path, map_location),
                load_from_local(path, map_location))
    assert CheckpointLoader._get_checkpoint_loader(
        paths[0]) is load_from_local_safely
    for url in ('http://a/b.pth', 'https://a/b.pth', 'open-mmlab://resnet50',
                'torchvision://resnet50', 'pavi://a/b.pth', 's3://a/b.pth'):
        loader = CheckpointLoader._get_checkpoint_loader(url)
        assert loader is not load_from_local_safely, url
        assert loader.__module__ == 'mmengine.runner.checkpoint', url


@pytest.mark.parametrize('content, found', [
    ([torch.zeros(2)], 'holds a list, not the dict of a checkpoint (a state '
     'dict, or one under "state_dict")'),
    (torch.zeros(2), 'holds a Tensor, not the dict of a checkpoint (a state '
     'dict, or one under "state_dict")'),
    ({'state_dict': [torch.zeros(2)]},
     'holds a list under "state_dict", not a state dict'),
])
def test_mmengine_refuses_what_is_not_a_checkpoint(content, found, tmp_path):
    """MMEngine's loading and resuming index a checkpoint as a dict: a file
    holding a list or a tensor (which torch.load reads) is one
    CheckpointError from the loader mmcot registers, not an AttributeError
    inside MMEngine; load_local_checkpoint itself returns what it holds."""
    from mmengine.runner.checkpoint import CheckpointLoader
    path = str(tmp_path / 'odd.pth')
    torch.save(content, path)
    with pytest.raises(CheckpointError) as info:
        CheckpointLoader.load_checkpoint(path, 'cpu')
    assert str(info.value) == f'checkpoint {path} {found}'
    assert type(load_local_checkpoint(path)) is type(content)
