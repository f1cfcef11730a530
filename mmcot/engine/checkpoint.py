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
- TorchScript archives, non-regular files and URLs are refused.

Nothing is added to torch's process-wide allow-list, and no object's state
outside the loaded checkpoint is set from the file.
"""
import errno
import io
import os
import os.path as osp
import pickle
import re
import stat
from typing import Any, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from . import checkpoint_unpickler

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
        return f.read()


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
        try:
            return _torch_weights_only(data, map_location)
        except Exception as error:
            raise CheckpointError(
                f'checkpoint {filename} is not a torch.save zip archive, and '
                'torch\'s weights-only reader of its older formats refused '
                f'it: {type(error).__name__}: {str(error).strip()[:500]}'
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
        return _load_bytes(filename, data, map_location)
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
            f'(truncated or corrupted?): {type(error).__name__}: '
            f'{str(error).strip()[:500]}') from None


def register_checkpoint_loader() -> None:
    """Make MMEngine load local files with :func:`load_local_checkpoint`."""
    CheckpointLoader.register_scheme(prefixes='',
                                     loader=load_local_checkpoint,
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
