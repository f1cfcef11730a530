"""Loading checkpoint files that users bring, without running code from them.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses
the training state MMEngine 0.10.7 writes into its runner checkpoints, so
those fail to resume or to load into ``init_model``. Importing mmcot makes
MMEngine load local files with :func:`load_local_checkpoint`:

- a file whose pickled names torch's own ``weights_only`` unpickler allows
  (by default or through the user's ``torch.serialization.add_safe_globals``)
  is loaded by that unpickler, exactly as MMEngine would without mmcot;
- any other ``torch.save`` zip archive (MMEngine runner checkpoints, official
  CoTNet training checkpoints) is read by
  :mod:`mmcot.engine.checkpoint_unpickler`, which builds only tensors,
  containers, numeric NumPy data, MMEngine history buffers and argparse
  namespaces, and refuses everything else;
- TorchScript archives, non-regular files and URLs are refused, and so,
  before any reader runs, are pickles that nest tuples deeper than a
  reader survives and zip entries that unpack far beyond their size;
- a runner checkpoint's ``meta['config']``, which MMEngine's
  ``Runner.resume`` runs as a Python config file, must be plain data that
  imports nothing new (:func:`_unsafe_config`).

Nothing is added to torch's process-wide allow-list, and no object's state
outside the loaded checkpoint is set from the file.
"""
import ast
import errno
import io
import os
import os.path as osp
import pickle
import re
import stat
import sys
import zipfile
from typing import Any, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmcot.untrusted_text import describe, describe_error, shorten

from . import checkpoint_unpickler

#: How many times larger than stored a compressed archive entry may unpack.
_MAX_UNPACKING = 50
_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')
_ZIP_MAGIC = b'PK\x03\x04'
_NOT_REGULAR = ((stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISCHR,
                                                         'a character device'),
                (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'))


class CheckpointError(pickle.UnpicklingError):
    """A checkpoint file that was not loaded; the message names the file and
    says why."""


def _read_regular_file(filename: str) -> bytes:
    """The bytes of a local regular file, read once (what is checked is
    what is loaded); never blocks on a FIFO or a device."""
    if _URL.match(filename):
        raise CheckpointError(
            f'checkpoint {filename} is a URL, which this local-file loader '
            'does not fetch: download it first, or load it through '
            'mmengine.runner.load_checkpoint, which knows http(s):// and '
            'the schemes of its file backends')
    path = osp.expanduser(filename)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileNotFoundError(
                f'checkpoint {filename} does not exist') from None
        raise CheckpointError(f'checkpoint {filename} cannot be read: '
                              f'{error.strerror}') from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(
            f'checkpoint {filename} is a directory, not a checkpoint file')
    for is_kind, kind in _NOT_REGULAR:
        if is_kind(mode):
            raise CheckpointError(
                f'checkpoint {filename} is {kind}, not a regular file')
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise CheckpointError(f'checkpoint {filename} cannot be read: '
                              f'{error.strerror}') from None
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(
                f'checkpoint {filename} changed into a non-regular file '
                'while it was opened')
        try:
            return f.read()
        except MemoryError:
            raise CheckpointError(f'checkpoint {filename} does not fit in '
                                  'memory') from None
        except OSError as error:
            raise CheckpointError(f'checkpoint {filename} cannot be read: '
                                  f'{error.strerror}') from None


def _check_archive(filename: str, data: bytes) -> bytes:
    """The pickle of a ``torch.save`` zip archive, refused if an entry is
    compressed far beyond what tensors compress (torch writes them stored;
    a deflated entry can unpack a megabyte into gigabytes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            for entry in entries:
                if entry.compress_type != zipfile.ZIP_STORED and (
                        entry.file_size >
                        _MAX_UNPACKING * entry.compress_size + (1 << 20)):
                    raise CheckpointError(
                        f'checkpoint {filename} is a zip bomb: its entry '
                        f'{describe(entry.filename, 100)} unpacks '
                        f'{entry.compress_size} bytes into '
                        f'{entry.file_size}')
            pickles = [e for e in entries
                       if e.filename.rsplit('/', 1)[-1] == 'data.pkl']
            return archive.read(pickles[0]) if len(pickles) == 1 else b''
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
            EOFError, OSError):
        return b''  # torch's zip reader says what is wrong


def _check_nesting(filename: str, data: bytes, pickles: int = 1) -> None:
    """Refuse the first ``pickles`` pickles of ``data`` if one would crash
    the process when read (by any reader, torch's included): see
    :func:`checkpoint_unpickler.check_tuple_nesting`."""
    file = io.BytesIO(data)
    try:
        for _ in range(pickles):
            if not checkpoint_unpickler.check_tuple_nesting(file):
                break
    except pickle.UnpicklingError as error:
        raise CheckpointError(f'checkpoint {filename} was not loaded: '
                              f'{error}') from None


def _config_literal(node: ast.AST) -> Any:
    """The value of a config expression made only of literals, containers
    and ``dict(key=value, ...)`` (what ``Config.pretty_text`` writes);
    ValueError naming the first thing that is not."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(
            node.op, (ast.USub, ast.UAdd)) and isinstance(
                node.operand, ast.Constant) and type(
                    node.operand.value) in (int, float, complex):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_config_literal(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {
            _config_literal(key): _config_literal(value)
            for key, value in zip(node.keys, node.values)
        }
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(keyword.arg for keyword in node.keywords)):
        return {k.arg: _config_literal(k.value) for k in node.keywords}
    raise ValueError(f'{type(node).__name__} at line {node.lineno}')


def _unsafe_config(text: Any) -> Optional[str]:
    """Why MMEngine's ``Config.fromstring(text, '.py')`` (which runs the
    text and imports the modules of its ``custom_imports``) could do more
    than rebuild a config from it, or None."""
    if type(text) is not str:
        return f'is a {type(text).__name__}, not the text of a config'
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 'is not the text of a Python config'
    values = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            return (f'holds a {type(statement).__name__} statement at line '
                    f'{statement.lineno}, not only assignments')
        name = statement.targets[0].id
        if name.startswith('__') or name in ('_base_', 'dict'):
            return f'assigns {shorten(name, 40)} (line {statement.lineno})'
        try:
            values[name] = _config_literal(statement.value)
        except (ValueError, RecursionError) as error:
            return f'computes something other than data: {error}'
    imports = values.get('custom_imports', {})
    imports = imports.get('imports', []) if type(imports) is dict else []
    for module in [imports] if type(imports) is str else imports:
        if type(module) is not str or module not in sys.modules:
            return (f'imports {describe(module)} through custom_imports, '
                    'a module this process has not imported')
    return None


def _check_runner_config(filename: str, checkpoint: Any) -> None:
    """Refuse a checkpoint whose ``meta['config']`` MMEngine's
    ``Runner.resume`` would run as code (see :func:`_unsafe_config`)."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta:
        return
    reason = _unsafe_config(meta['config'])
    if reason:
        raise CheckpointError(
            f'checkpoint {filename} was not loaded: its meta["config"], '
            'which MMEngine\'s Runner.resume runs as a Python config file, '
            f'{reason}. A config MMEngine saved is plain data; if you trust '
            'the file, load it with torch.load(..., weights_only=False), '
            'remove meta["config"] and torch.save it')


def _torch_weights_only(data: bytes, map_location: Any) -> Any:
    return torch.load(io.BytesIO(data),
                      map_location=map_location,
                      weights_only=True,
                      mmap=False)


def _load_bytes(filename: str, data: bytes, map_location: Any) -> Any:
    if not data:
        raise CheckpointError(f'checkpoint {filename} is empty')
    if data[:4] != _ZIP_MAGIC:
        # torch's legacy formats, if anything: torch's own rules decide
        # (magic number, protocol, system, object and storage keys pickled)
        _check_nesting(filename, data, pickles=5)
        try:
            return _torch_weights_only(data, map_location)
        except Exception as error:
            raise CheckpointError(
                f'checkpoint {filename} is not a torch.save zip archive, and '
                'torch\'s weights-only reader of its older formats refused '
                f'it: {describe_error(error, 500)}'
            ) from None
    records = torch._C.PyTorchFileReader(io.BytesIO(data)).get_all_records()
    if 'constants.pkl' in records:
        raise CheckpointError(
            f'checkpoint {filename} is a TorchScript archive, which holds '
            'code: it is not loaded as a checkpoint (use torch.jit.load on '
            'a file you trust)')
    if 'data.pkl' not in records:
        raise CheckpointError(
            f'checkpoint {filename} is a zip archive without data.pkl, not '
            'a torch.save checkpoint')
    _check_nesting(filename, _check_archive(filename, data))
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            io.BytesIO(data))
    except (pickle.UnpicklingError, EOFError):
        unsafe = None  # opcodes torch's scan does not know
    if unsafe == []:
        return _torch_weights_only(data, map_location)
    if os.getenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD',
                 '0').lower() in ('1', 'y', 'yes', 'true'):
        raise CheckpointError(
            f'checkpoint {filename} holds {sorted(unsafe or [])}, which '
            'torch\'s weights_only unpickler refuses, and '
            'TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which leaves only that '
            'unpickler to read checkpoints')
    return torch.load(io.BytesIO(data),
                      map_location=map_location,
                      pickle_module=checkpoint_unpickler,
                      weights_only=False,
                      mmap=False)


def load_local_checkpoint(filename: Union[str, os.PathLike],
                          map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint file without running code from it.

    Args:
        filename (str | PathLike): The checkpoint (``~`` is expanded).
        map_location: As for ``torch.load``.

    Returns:
        The checkpoint's object: tensors, containers, NumPy data and
        MMEngine training state.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        IsADirectoryError: ``filename`` is a directory.
        CheckpointError: Anything else that keeps the file from loading: not
            a regular file, a URL, empty, truncated or not a checkpoint, or
            holding objects other than those above.
    """
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError('filename must be a str or os.PathLike, got '
                        f'{type(filename).__name__}')
    filename = os.fspath(filename)
    data = _read_regular_file(filename)
    try:
        checkpoint = _load_bytes(filename, data, map_location)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'checkpoint {filename} was not loaded: it holds objects other '
            'than tensors, containers, numeric NumPy data and MMEngine '
            'training state (README: "Loading checkpoints safely"). If you '
            'trust the file, load it with torch.load(..., '
            'weights_only=False) and torch.save its state dict. '
            f'Refused: {error}') from None
    except MemoryError:
        raise CheckpointError(f'checkpoint {filename} does not fit in '
                              'memory') from None
    except Exception as error:  # torch's zip and storage readers
        raise CheckpointError(
            f'checkpoint {filename} is not a readable torch.save checkpoint '
            f'(truncated or corrupted?): {describe_error(error, 500)}'
        ) from None
    _check_runner_config(filename, checkpoint)
    return checkpoint


def load_from_local_safely(filename: str,
                           map_location: Optional[Any] = None) -> dict:
    """:func:`load_local_checkpoint` for MMEngine, whose loading and resuming
    take a checkpoint to be a dict, its ``state_dict`` (if any) a dict too:
    anything else is one CheckpointError here rather than an AttributeError
    in MMEngine."""
    checkpoint = load_local_checkpoint(filename, map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'checkpoint {filename} holds a {type(checkpoint).__name__}, '
            'not the dict of a checkpoint (a state dict, or one under '
            '"state_dict")')
    state_dict = checkpoint.get('state_dict', {})
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f'checkpoint {filename} holds a {type(state_dict).__name__} '
            'under "state_dict", not a state dict')
    return checkpoint


def register_checkpoint_loader() -> None:
    """Make MMEngine load local files with :func:`load_from_local_safely`."""
    CheckpointLoader.register_scheme(prefixes='',
                                     loader=load_from_local_safely,
                                     force=True)


def check_checkpoint_matches(model: torch.nn.Module, filename: str) -> None:
    """Raise ValueError unless the checkpoint's state dict has exactly the
    keys and shapes of ``model`` (a wrapper's ``module.``, as of DDP or a
    test-time-augmentation model, is ignored, as MMEngine does)."""
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from mmcot.models.utils import check_state_dict, load_state_dict_from
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    check_state_dict(model.state_dict(), load_state_dict_from(filename),
                     f'checkpoint {filename} and the config\'s model')
