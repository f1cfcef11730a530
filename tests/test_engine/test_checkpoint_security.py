"""Crafted checkpoints, written opcode by opcode as an attacker would, against
every way a user loads a file once mmcot is imported.

Each file must be refused with a ``CheckpointError`` naming it and saying
why, in a subprocess that shows that no code ran (no marker file), that
MMEngine's class-level statistics registry and torch's allow-list are as
they were, that nothing crashed and that no large allocation happened.
"""
import io
import json
import os
import os.path as osp
import pickle
import re
import struct
import subprocess
import sys
import threading
import warnings
import zipfile

import numpy as np
import pytest
import torch

from mmcot.engine import (CheckpointError, checkpoint_unpickler,
                          load_local_checkpoint)

from ..conftest import REPO, run_tool
from .crafted_pickles import (Build, Call, Global, New, Put, Raw, Ref, Storage,
                              float_storage, float_tensor, pickle_bytes,
                              write_torch_zip)
from .toy_runner import train_toy_runner

HB = Global('mmengine.logging.history_buffer', 'HistoryBuffer')
GETATTR = Global('__builtin__', 'getattr')
REBUILD_FROM_TYPE = Global('torch._tensor', '_rebuild_from_type_v2')
RECONSTRUCT = Global('numpy.core.multiarray', '_reconstruct')
NDARRAY = Global('numpy', 'ndarray')
DTYPE = Global('numpy', 'dtype')
SCALAR = Global('numpy.core.multiarray', 'scalar')
ORDERED_DICT = Global('collections', 'OrderedDict')
NAMESPACE = Global('argparse', 'Namespace')
COUNTER = Global('collections', 'Counter')
F8_STATE = (3, '<', None, None, None, -1, -1, 0)


def attr(obj, name):
    return Call(GETATTR, (obj, name))


def via_rebuild(func, new_type, args, state=None):
    """torch's allowed ``_rebuild_from_type_v2`` as a call gadget."""
    return Call(REBUILD_FROM_TYPE, (func, new_type, args, state or {}))


def dtype(code='f8', state=F8_STATE):
    return Build(Call(DTYPE, (code, False, True)), state)


def array(dtype_node, shape, raw):
    return Build(Call(RECONSTRUCT, (NDARRAY, (0, ), b'b')),
                 (1, shape, dtype_node, False, raw))


def history_buffer(**state):
    """A HistoryBuffer as MMEngine pickles one; ``state`` overrides."""
    full = dict(max_length=1000000,
                _log_history=array(dtype('f8'), (2, ),
                                   np.ones(2).tobytes()),
                _count_history=array(
                    dtype('i8', (3, '<', None, None, None, -1, -1, 0)), (2, ),
                    np.ones(2, np.int64).tobytes()),
                statistics_methods={
                    name: attr(HB, name)
                    for name in ('min', 'max', 'current', 'mean')
                })
    full.update(state)
    return Build(New(HB), full)


def write_marker(marker):
    return f'open({marker!r}, "w").write("pwned")'


#: name -> (write(path, marker), what the refusal must say)
ATTACKS = {}


def attack(reason):
    """Register ``write(path, marker)`` as an attack refused for ``reason``."""

    def register(write):
        ATTACKS[write.__name__] = write, reason
        return write

    return register


def crafted(value):
    """An attack whose file is the pickle of ``value(marker)`` in torch's
    zip layout, beside one storage of four floats."""

    def write(path, marker):
        write_torch_zip(path, pickle_bytes(value(marker)),
                        {'0': float_storage([1.0] * 4)})

    write.__name__ = value.__name__
    return write


def tensor_on_storage(numel, size, key='0'):
    return Call(
        Global('torch._utils', '_rebuild_tensor_v2'),
        (Storage('FloatStorage', key, numel), 0, size,
         (1, ), False, Call(ORDERED_DICT, ())))


@attack('statistics_methods may only name')
@crafted
def exec_chain(marker):
    """The red team's chain (code ran with mmcot's earlier loader): poison
    HistoryBuffer's class-level registry through ``__setstate__``, let the
    restricted getattr hand out dunders, call through
    ``_rebuild_from_type_v2`` up to ``exec``."""
    poison = Build(
        New(HB), {
            'statistics_methods':
            dict.fromkeys(
                ['__class__', '__getattribute__', '__init__',
                 '__subclasshook__'], 0)
        })
    type_ = Put(attr(HB, '__class__'), 1)
    getattribute = Put(attr(HB, '__getattribute__'), 2)
    builtin_type = Put(
        via_rebuild(Ref(1), Ref(1), (attr(HB, '__subclasshook__'), )), 3)
    dict_type = Put(via_rebuild(Ref(1), Ref(1), ({}, )), 4)
    none_type = Put(via_rebuild(Ref(1), Ref(1), (None, )), 5)
    module_globals = Put(
        via_rebuild(Ref(2), Ref(4), (attr(HB, '__init__'), '__globals__')), 6)
    builtins = Put(
        via_rebuild(
            via_rebuild(Ref(2), Ref(3), (Ref(6), 'get')), Ref(4),
            ('__builtins__', )), 7)
    exec_ = Put(
        via_rebuild(
            via_rebuild(Ref(2), Ref(3), (Ref(7), 'get')), Ref(3),
            ('exec', )), 8)
    run = via_rebuild(Ref(8), Ref(5), (write_marker(marker), ))
    return [
        poison, type_, getattribute, builtin_type, dict_type, none_type,
        module_globals, builtins, exec_, run
    ]


@attack("getattr(mmengine.logging.history_buffer.HistoryBuffer, '__init__')")
@crafted
def getattr_dunder(marker):
    return [history_buffer(), attr(attr(HB, '__init__'), '__globals__')]


@attack("getattr(collections.OrderedDict, 'fromkeys') is not allowed")
@crafted
def getattr_on_another_object(marker):
    return [history_buffer(), attr(ORDERED_DICT, 'fromkeys')]


@attack('global torch._tensor._rebuild_from_type_v2 is not allowed')
@crafted
def rebuild_from_type_gadget(marker):
    return [
        history_buffer(),
        via_rebuild(Global('builtins', 'exec'), None, (write_marker(marker), ))
    ]


@attack('statistics_methods may only name')
@crafted
def registry_poison_mean(marker):
    """Loads cleanly with MMEngine's own __setstate__, then computes max
    wherever MMEngine logs a mean, in every later checkpoint too."""
    return history_buffer(statistics_methods={'mean': attr(HB, 'max')})


@attack('statistics_methods may only name')
@crafted
def registry_poison_new_name(marker):
    return history_buffer(statistics_methods={'evil': attr(HB, 'min')})


@attack('global os.system is not allowed')
@crafted
def os_system(marker):
    return [
        history_buffer(),
        Call(Global('os', 'system'), (f'touch {marker}', ))
    ]


@attack('global os.system is not allowed')
@crafted
def os_system_alone(marker):
    return Call(Global('os', 'system'), (f'touch {marker}', ))


@attack('global __builtin__.eval is not allowed')
@crafted
def builtins_eval(marker):
    return [
        history_buffer(),
        Call(Global('__builtin__', 'eval'), (write_marker(marker), ))
    ]


@attack("NumPy dtype 'O'")
@crafted
def dtype_object(marker):
    return dtype('O', (3, '|', None, None, None, -1, -1, 63))


@attack("NumPy dtype 'V16'")
@crafted
def dtype_structured_object_field(marker):
    """Raw file bytes read as a PyObject pointer."""
    fields = {'a': (dtype('O', (3, '|', None, None, None, -1, -1, 63)), 0)}
    return array(
        dtype('V16', (3, '|', None, ('a', ), fields, 16, 1, 0)), (1, ),
        bytes(16))


@attack('changes its layout')
@crafted
def dtype_fields_on_float(marker):
    fields = {'a': (dtype('f8'), 0)}
    return dtype('f8', (3, '<', None, ('a', ), fields, 8, 1, 0))


@attack('changes its layout')
@crafted
def dtype_subarray(marker):
    """65536 doubles declared on a 16-byte item: reads past the buffer."""
    subarray = (dtype('f8'), (65536, ))
    return array(
        dtype('f8', (3, '<', subarray, None, None, 16, 8, 0)), (1, ),
        bytes(16))


@attack('changes its layout')
@crafted
def dtype_flags(marker):
    return dtype('f8', (3, '<', None, None, None, -1, -1, 63))


@attack('needs 524288 bytes, the file gives 16')
@crafted
def array_larger_than_its_bytes(marker):
    return array(dtype('f8'), (65536, ), bytes(16))


@attack('numpy _reconstruct is allowed only as')
@crafted
def array_shape_allocation(marker):
    return Call(RECONSTRUCT, (NDARRAY, (1_500_000_000, ), b'b'))


@attack('used before it is built')
@crafted
def scalar_of_an_unbuilt_dtype(marker):
    return [
        Put(Call(DTYPE, ('f8', False, True)), 9),
        Call(SCALAR, (Ref(9), bytes(8)))
    ]


@attack('max_length must be an int')
@crafted
def history_max_length(marker):
    return history_buffer(max_length=10**12)


@attack('equal lengths of at most')
@crafted
def history_longer_than_max_length(marker):
    return history_buffer(max_length=1)


@attack('one-dimensional numeric array')
@crafted
def history_list(marker):
    """A history of 200,000 references instead of an array."""
    return [Put(1.5, 9), history_buffer(_log_history=[Ref(9)] * 200_000)]


@attack('builds more bytes than the file holds')
@crafted
def encode_bomb(marker):
    """One 1 MiB string, remembered once, encoded 2048 times: 2 GiB of
    bytes from a 1 MiB file."""
    encode = Call(Global('_codecs', 'encode'), (Ref(9), 'latin1'))
    return [Put('a' * (1 << 20), 9)] + [encode] * 2048 + [history_buffer()]


@attack('record size')
@crafted
def storage_larger_than_its_record(marker):
    return [history_buffer(), tensor_on_storage(100_000_000, (100_000_000, ))]


@attack('reaches element 65535')
@crafted
def tensor_view_beyond_its_storage(marker):
    return [history_buffer(), tensor_on_storage(4, (65536, ))]


@attack('is not a storage of the file')
@crafted
def storage_key_path(marker):
    return [
        history_buffer(),
        tensor_on_storage(4, (4, ), key='../../../etc/passwd')
    ]


@attack('setting the state of a Tensor')
@crafted
def build_on_a_tensor(marker):
    return [history_buffer(), Build(tensor_on_storage(4, (4, )), {'x': 1})]


@attack("only a state dict's _metadata")
@crafted
def ordered_dict_state(marker):
    return [history_buffer(), Build(Call(ORDERED_DICT, ()), {'__class__': 1})]


@attack('must map attribute names')
@crafted
def namespace_dunder(marker):
    return Build(New(NAMESPACE), {'__dict__': {'a': 1}})


@attack('pickle protocol 4')
def protocol_4(path, marker):
    data = bytearray(pickle_bytes([history_buffer()]))
    data[1] = 4
    write_torch_zip(path, bytes(data))


@attack('TorchScript archive')
def torchscript_archive(path, marker):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit's deprecation
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)


@attack('posix.system')
def plain_pickle(path, marker):
    """Not a zip: a bare pickle, as torch's legacy format starts."""
    with open(path, 'wb') as f:
        f.write(
            pickle_bytes(
                Call(Global('posix', 'system'), (f'touch {marker}', ))))


@attack('truncated or corrupted')
def truncated_runner_checkpoint(path, marker):
    """A runner checkpoint cut in half, as a kill during torch.save leaves
    it."""
    folder = osp.dirname(path)
    train_toy_runner(osp.join(folder, 'run'), max_epochs=1)
    with open(osp.join(folder, 'run', 'epoch_1.pth'), 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


@attack('without data.pkl')
def zip_without_pickle(path, marker):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/version', '3\n')


def runner_checkpoint(config):
    """What MMEngine's Runner.resume reads, with ``config`` as the config
    text it passes to Config.fromstring(..., '.py')."""
    return {
        'meta': {'epoch': 0, 'iter': 0, 'config': config},
        'state_dict': {},
        'message_hub': {'log_scalars': {}, 'runtime_info': {},
                        'resumed_keys': {}},
    }


@attack('which MMEngine\'s Runner.resume runs as a Python config file, '
        'computes something other than data: Call at line 1')
@crafted
def resume_config_code(marker):
    """Plain dicts and strings, which torch's own weights-only reader loads;
    Runner.resume then runs meta.config (the red team ran code this way
    through tools/train.py --resume)."""
    return runner_checkpoint(
        f"x = __import__('os').system('touch {marker}')\n")


@attack('holds a Import statement at line 2')
@crafted
def resume_config_import(marker):
    return runner_checkpoint(
        f"model = dict(type='x')\nimport os; os.system('touch {marker}')\n")


@attack("imports 'this' through custom_imports, a module this process has "
        'not imported')
@crafted
def resume_config_custom_imports(marker):
    """Config.fromfile imports what custom_imports names (here the Zen of
    Python, printed on import)."""
    return runner_checkpoint(
        "custom_imports = dict(imports=['mmcot', 'this'])\n")


def nested_tuples(depth):
    """A tuple nested ``depth`` deep, one opcode a level."""
    return Raw(b')' + b'\x85' * depth)


@attack('nests tuples more than 1000 deep')
@crafted
def tuple_nesting_key(marker):
    """A million nested tuples as a dict key (a megabyte): hashing the key
    recursed in C until the stack overflowed and the process died, in
    torch's reader (which takes this file: no globals) as in mmcot's."""
    return Raw(b'}' + nested_tuples(1_000_000).data + b'K\x01s')


@attack('nests tuples more than 1000 deep')
@crafted
def tuple_nesting_key_in_runner_state(marker):
    return [history_buffer(),
            Raw(b'}' + nested_tuples(1_000_000).data + b'K\x01s')]


@attack('calling a list is not allowed')
@crafted
def message_amplification(marker):
    """A refused call whose target is 20,000 references to one 64 KiB
    string: its full repr, which the message once started from, is 1.3 GB.
    """
    return [history_buffer(), Put('a' * (1 << 16), 9),
            Call([Ref(9)] * 20_000, ())]


@attack('builds more bytes than the file holds')
@crafted
def counter_copies(marker):
    """One dict of 1,000 counts, passed to Counter 20,000 times by memo
    reference (13 bytes a call): 20 million entries from 300 kB."""
    counts = Put({i: 1 for i in range(1000)}, 9)
    return [history_buffer(), counts, Put(COUNTER, 8)] + [
        Call(Ref(8), (Ref(9), ))] * 20_000


@attack('builds more bytes than the file holds')
@crafted
def namespace_copies(marker):
    state = Put({f'a{i}': 0 for i in range(1000)}, 9)
    return [state, Put(NAMESPACE, 8)] + [Build(New(Ref(8)), Ref(9))] * 20_000


@attack('builds more bytes than the file holds')
@crafted
def metadata_rechecks(marker):
    """One _metadata of 1,000 modules shared by 20,000 state dicts: each
    check walked all of it (minutes of CPU from a few hundred kB)."""
    metadata = Put({f'm{i}': {'version': 1} for i in range(1000)}, 9)
    return [history_buffer(), metadata, Put(ORDERED_DICT, 8)] + [
        Build(Call(Ref(8), ()), {'_metadata': Ref(9)})] * 20_000


@attack('is a zip bomb')
def zip_bomb(path, marker):
    """data.pkl deflated: 256 MiB of pickle in a 250 kB file (torch's reader
    unpacks it whole)."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        with archive.open('archive/data.pkl', 'w', force_zip64=True) as f:
            f.write(b'\x80\x02X' + struct.pack('<I', 1 << 28))
            for _ in range(256):
                f.write(bytes(1 << 20))
            f.write(b'.')
        archive.writestr('archive/version', '3\n')


@pytest.fixture(scope='module')
def attack_files(tmp_path_factory):
    """name -> (crafted file, marker path that a payload would create)."""
    folder = tmp_path_factory.mktemp('attacks')
    files = {}
    for name, (write, _) in ATTACKS.items():
        path, marker = str(folder / f'{name}.pth'), str(folder /
                                                        f'{name}.pwned')
        os.makedirs(folder / name, exist_ok=True)
        write(str(folder / name / 'checkpoint.pth'), marker)
        os.replace(folder / name / 'checkpoint.pth', path)
        files[name] = path, marker
    return files


def probe(entry, paths, work_dir, fork_each=False):
    """Run checkpoint_probe in a fresh interpreter; its reports by file."""
    result = subprocess.run([
        sys.executable, '-m', 'tests.test_engine.checkpoint_probe',
        *(['--fork-each'] if fork_each else []), entry,
        str(work_dir), *paths
    ],
                            cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO),
                            capture_output=True,
                            text=True,
                            timeout=600)
    reports = [
        json.loads(line) for line in result.stdout.splitlines()
        if line.startswith('{')
    ]
    assert result.returncode == 0, (
        f'the probe died ({result.returncode}) after '
        f'{reports[-1:] if reports else "nothing"}:\n{result.stderr[-3000:]}')
    return {r['file']: r for r in reports if not r.get('started')}


def assert_refused(report, path, marker, reason):
    assert report['outcome'] == 'CheckpointError', report
    assert path in report['message'], report['message']
    assert reason in report['message'], report['message']
    assert not osp.exists(marker), 'the payload ran'
    assert report['registry_unchanged'], 'HistoryBuffer registry changed'
    assert report['safe_globals_unchanged'], "torch's allow-list changed"
    assert report['peak_growth_mib'] < 100, report


@pytest.fixture(scope='module')
def each_alone(attack_files, tmp_path_factory):
    """Reports of load_local_checkpoint on each crafted file alone, in its
    own copy of a fresh interpreter that has loaded nothing."""
    return probe('load_local_checkpoint',
                 [path for path, _ in attack_files.values()],
                 tmp_path_factory.mktemp('each_alone'),
                 fork_each=True)


@pytest.mark.parametrize('name', sorted(ATTACKS))
def test_crafted_checkpoint_is_refused(name, attack_files, each_alone):
    path, marker = attack_files[name]
    assert_refused(each_alone[path], path, marker, ATTACKS[name][1])


@pytest.mark.parametrize('entry', [
    'mmengine_load_checkpoint', 'runner_resume', 'init_model',
    'test_tool_check', 'pretrained_init_cfg'
])
def test_every_loading_path_refuses_crafted_checkpoints(
        entry, attack_files, tmp_path):
    """MMEngine's load_checkpoint, Runner(load_from, resume=True),
    mmpretrain's init_model, tools/test.py's strict check and a Pretrained
    init_cfg all go through the same loader."""
    reports = probe(entry, [p for p, _ in attack_files.values()], tmp_path)
    for name, (path, marker) in attack_files.items():
        assert_refused(reports[path], path, marker, ATTACKS[name][1])


def test_test_tool_prints_one_error_line(attack_files, shapes_cls, tmp_path):
    path, marker = attack_files['exec_chain']
    result = run_tool('tools/test.py',
                      'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py',
                      path,
                      '--work-dir',
                      str(tmp_path),
                      '--cfg-options',
                      f'test_dataloader.dataset.data_root={shapes_cls}',
                      'test_dataloader.num_workers=0',
                      check=False)
    assert result.returncode != 0
    assert f'error: checkpoint {path} was not loaded' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not osp.exists(marker)


# files users bring that are not checkpoints at all


def test_directory(tmp_path):
    with pytest.raises(
            IsADirectoryError,
            match=re.escape(f'checkpoint {tmp_path} is a directory')):
        load_local_checkpoint(str(tmp_path))


def test_missing_file(tmp_path):
    missing = str(tmp_path / 'nowhere.pth')
    with pytest.raises(
            FileNotFoundError,
            match=re.escape(f'checkpoint {missing} does not exist')):
        load_local_checkpoint(missing)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / 'pipe.pth')
    os.mkfifo(fifo)
    result = subprocess.run([
        sys.executable, '-c',
        'import sys; from mmcot.engine import load_local_checkpoint\n'
        'try: load_local_checkpoint(sys.argv[1])\n'
        'except Exception as e: print(type(e).__name__, e)', fifo
    ],
                            cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO),
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.stdout.strip() == (
        f'CheckpointError checkpoint {fifo} is a FIFO (named pipe), not a '
        'regular file')


def test_device_is_refused():
    with pytest.raises(CheckpointError,
                       match='/dev/zero is a character device'):
        load_local_checkpoint('/dev/zero')


@pytest.mark.parametrize('url', [
    'https://example.com/cotnet50.pth', 's3://bucket/cotnet50.pth',
    'hf://org/cotnet50.pth'
])
def test_url_is_refused_by_the_local_loader(url):
    with pytest.raises(CheckpointError,
                       match=re.escape(f'checkpoint {url} is a URL')):
        load_local_checkpoint(url)


@pytest.mark.parametrize('content, reason', [
    (b'', 'is empty'),
    (b'\x00' * 100, 'is not a torch.save zip archive'),
    (b'PK\x03\x04' + bytes(100), 'truncated or corrupted'),
])
def test_not_a_checkpoint(tmp_path, content, reason):
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_local_checkpoint(str(path))
    assert f'checkpoint {path} ' in str(info.value)
    assert reason in str(info.value)


def test_unreadable_file_is_refused(tmp_path):
    """A regular file whose read fails (/proc/self/mem: EIO) is one
    CheckpointError naming it."""
    link = tmp_path / 'mem.pth'
    link.symlink_to('/proc/self/mem')
    with pytest.raises(CheckpointError,
                       match=re.escape(f'checkpoint {link} cannot be read')):
        load_local_checkpoint(str(link))


@pytest.mark.parametrize('depth', [1000, 1001])
def test_tuple_nesting_limit(depth):
    """mmcot's reader takes tuples nested as deep as MAX_TUPLE_NESTING as a
    dict key and refuses one level more, before building any."""
    data = b'\x80\x02}' + b')' + b'\x85' * (depth - 1) + b'K\x01s.'
    assert checkpoint_unpickler.MAX_TUPLE_NESTING == 1000
    if depth > 1000:
        with pytest.raises(pickle.UnpicklingError,
                           match='nests tuples more than 1000 deep'):
            checkpoint_unpickler.load(io.BytesIO(data))
        return
    loaded = checkpoint_unpickler.load(io.BytesIO(data))
    [(key, value)] = loaded.items()
    levels = 0
    while key != ():
        key, = key
        levels += 1
    assert (levels + 1, value) == (depth, 1)


@pytest.mark.parametrize('config', [
    'configs/cotnet/cotnet50_8xb64_in1k.py',
    'configs/mask_rcnn/mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py',
    'configs/upernet/upernet_cotnet-tiny_1xb8-3k_shapes-128x128.py',
])
def test_runner_checkpoint_with_a_saved_config_loads(config, tmp_path):
    """The config text MMEngine saves in a checkpoint (pretty_text) is plain
    data: such a checkpoint loads and its config reads back."""
    from mmengine.config import Config
    text = Config.fromfile(osp.join(REPO, config)).pretty_text
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(runner_checkpoint(text), path)
    checkpoint = load_local_checkpoint(path)
    assert checkpoint['meta']['config'] == text
    assert Config.fromstring(text, '.py').model == Config.fromfile(
        osp.join(REPO, config)).model


def test_wrong_argument_type():
    with pytest.raises(TypeError, match='filename must be a str'):
        load_local_checkpoint(3)


# torch.load elsewhere in the process


def _outcome(load, path):
    try:
        load(path)
        return 'loaded'
    except Exception as error:
        return type(error).__name__


@pytest.fixture(scope='module')
def everyday_files(tmp_path_factory):
    """A state dict, a runner checkpoint, a NumPy array, the exec chain."""
    folder = tmp_path_factory.mktemp('everyday')
    train_toy_runner(str(folder / 'run'), max_epochs=1)
    torch.save({'w': torch.ones(2)}, folder / 'state_dict.pth')
    torch.save({'a': np.zeros(3)}, folder / 'numpy.pth')
    exec_chain(str(folder / 'chain.pth'), str(folder / 'chain.pwned'))
    return [
        str(folder / 'state_dict.pth'),
        str(folder / 'run' / 'epoch_1.pth'),
        str(folder / 'numpy.pth'),
        str(folder / 'chain.pth')
    ]


def test_plain_torch_load_is_untouched(everyday_files, tmp_path):
    """``torch.load`` in the same process accepts and refuses exactly what
    it does in a process without mmcot, before, during (another thread)
    and after mmcot loads a runner checkpoint; the user's own allow-list
    entries survive."""
    script = ('import sys, numpy, torch\n'
              'torch.serialization.add_safe_globals(\n'
              '    [(numpy.dtype, "numpy.dtype")])\n'
              'for p in sys.argv[1:]:\n'
              '    try: torch.load(p); print("loaded")\n'
              '    except Exception as e: print(type(e).__name__)\n')
    without_mmcot = subprocess.run(
        [sys.executable, '-c', script, *everyday_files],
        capture_output=True,
        text=True,
        timeout=120,
        check=True).stdout.split()
    assert without_mmcot == [
        'loaded', 'UnpicklingError', 'UnpicklingError', 'UnpicklingError'
    ]

    def plain():
        return [_outcome(torch.load, path) for path in everyday_files]

    user_entry = (np.dtype, 'numpy.dtype')
    torch.serialization.add_safe_globals([user_entry])
    try:
        allowed = set(torch.serialization.get_safe_globals())
        assert plain() == without_mmcot
        inside, release = threading.Event(), threading.Event()

        def paused_map_location(storage, location):
            inside.set()
            assert release.wait(60)
            return storage

        loaded = {}
        thread = threading.Thread(
            target=lambda: loaded.update(checkpoint=load_local_checkpoint(
                everyday_files[1], map_location=paused_map_location)))
        thread.start()
        assert inside.wait(60)
        during, during_allowed = plain(), set(
            torch.serialization.get_safe_globals())
        release.set()
        thread.join(60)
        assert during == without_mmcot
        assert during_allowed == allowed
        assert loaded['checkpoint']['meta']['epoch'] == 1
        assert plain() == without_mmcot
        assert set(torch.serialization.get_safe_globals()) == allowed
        assert user_entry in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()
    assert not osp.exists(everyday_files[3].replace('.pth', '.pwned'))


def test_user_allow_list_still_decides_for_torch_loadable_files(
        tmp_path, monkeypatch):
    """A file torch's unpickler can load with the user's allow-list is left
    to it, as MMEngine would without mmcot; mmcot's reader takes the rest."""
    import argparse

    from mmcot.engine import checkpoint_unpickler
    path = str(tmp_path / 'with_namespace.pth')
    torch.save({'args': argparse.Namespace(lr=0.1)}, path)
    calls = []
    load = checkpoint_unpickler.Unpickler.load
    monkeypatch.setattr(checkpoint_unpickler.Unpickler, 'load',
                        lambda self: calls.append(1) or load(self))
    assert load_local_checkpoint(path)['args'].lr == 0.1
    assert calls == [1]
    torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        assert load_local_checkpoint(path)['args'].lr == 0.1
    finally:
        torch.serialization.clear_safe_globals()
    assert calls == [1]


def test_crafted_pickle_helper_matches_the_pickler():
    """The attack assembler writes what Python's pickler writes, so the
    attacks are well-formed up to their payload."""
    value = {'a': [1, 2.5, None, True], 'b': (b'xy', 'z'), 'c': -7}
    assert pickle.loads(pickle_bytes(value)) == value
    buffer = io.BytesIO()
    write_torch_zip(buffer, pickle_bytes({'w': float_tensor([1.0, 2.0])}),
                    {'0': float_storage([1.0, 2.0])})
    buffer.seek(0)
    assert torch.equal(torch.load(buffer)['w'], torch.tensor([1.0, 2.0]))
