"""Loading of MMEngine runner checkpoints under torch's ``weights_only``.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses
what MMEngine 0.10.7 itself writes into a checkpoint's ``message_hub``
(``HistoryBuffer`` objects, NumPy arrays and scalars, and references to
``HistoryBuffer``'s statistics methods, pickled through ``getattr``): runner
checkpoints then fail to resume or to load into ``init_model``.

Importing mmcot replaces MMEngine's local-file checkpoint loader by one that
keeps ``weights_only=True`` and allows exactly those types; ``getattr`` is
allowed only on ``HistoryBuffer`` for its statistics methods, so a file
still cannot reach arbitrary code.
"""
import os.path as osp
import pickle
from typing import Any, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as pickled by ``HistoryBuffer``, and nothing else."""
    statistics = {'min', 'max', 'current', 'mean'}
    if obj is HistoryBuffer and (name in statistics or
                                 name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only HistoryBuffer statistics methods are allowed')


def _numpy_globals() -> list:
    """The NumPy globals that pickled arrays, dtypes and scalars use."""
    found = [np.ndarray, np.dtype]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            multiarray = __import__(module, fromlist=['_reconstruct'])
        except ImportError:
            continue
        found += [(multiarray._reconstruct, f'{module}._reconstruct'),
                  (multiarray.scalar, f'{module}.scalar')]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        found += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType')
        ]
    return found


MMENGINE_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
    (_history_buffer_getattr, '__builtin__.getattr'),
] + _numpy_globals()


def load_local_checkpoint(filename: str,
                          map_location: Optional[Any] = None) -> Any:
    """``torch.load`` of a local file with ``weights_only=True``, allowing
    the objects MMEngine stores in its own checkpoints."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
        try:
            return torch.load(
                filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            raise pickle.UnpicklingError(
                f'{filename} holds objects other than tensors and MMEngine '
                'training state, so it was not loaded (weights_only=True). '
                'If you trust the file, re-save its state dict with '
                'torch.load(..., weights_only=False) and torch.save. '
                f'Details: {error}') from error


def register_checkpoint_loader() -> None:
    """Make MMEngine load local checkpoints with :func:`load_local_checkpoint`."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


def check_checkpoint_matches(model: torch.nn.Module, filename: str) -> None:
    """Raise ValueError unless the checkpoint's state dict has exactly the
    keys and shapes of ``model`` (a ``module.`` wrapper is ignored)."""
    from mmengine.model import is_model_wrapper

    from mmcot.models.utils import check_state_dict, load_state_dict_from
    if is_model_wrapper(model):
        model = model.module
    check_state_dict(model.state_dict(), load_state_dict_from(filename),
                     f'checkpoint {filename} and the config\'s model')
