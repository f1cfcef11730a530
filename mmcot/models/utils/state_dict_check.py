"""Key-by-key, shape-by-shape comparison of state dicts, with a readable
report: a checkpoint of the wrong variant must fail loudly, not load half;
one that is not a state dict at all (a list, a tensor, keys that are not
strings) is refused with what was expected and the type names of what was
found, never with an AttributeError from deep inside."""
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

from mmcot.untrusted_text import describe, shorten


class StateDictError(ValueError):
    """A checkpoint's state dict that is malformed, or that does not match
    the model it is for; the message names the file (or what was compared)
    and says what was expected. The tools end with one ``error:`` line on
    it (:func:`mmcot.engine.exit_on_file_errors`)."""


def _listing(items: List[str], limit: int = 20) -> str:
    if not items:
        return 'none'
    shown = ', '.join(shorten(item) for item in items[:limit])
    return shown + (f' ... ({len(items)} in all)'
                    if len(items) > limit else '')


def check_state_dict(expected: Dict[str, torch.Tensor],
                     given: Dict[str, torch.Tensor],
                     what: str,
                     optional: Iterable[str] = ('num_batches_tracked', )
                     ) -> None:
    """Raise ValueError unless ``given`` has exactly the keys and shapes of
    ``expected``.

    Args:
        expected (dict): The state dict of the model to load into.
        given (dict): The state dict to load.
        what (str): Names the pair in the message, e.g. ``'checkpoint x.pth
            for CoTNet(depth=50)'``.
        optional (Iterable[str]): Key suffixes that may be missing (BN
            counters, which older checkpoints do not store).
    """
    optional = tuple(optional)
    missing = [
        k for k in expected if k not in given and not k.endswith(optional)
    ]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f'{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}'
        for k, v in given.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise StateDictError(f'{what} do not match:\n'
                             f'  missing keys: {_listing(missing)}\n'
                             f'  unexpected keys: {_listing(unexpected)}\n'
                             f'  shape mismatches (given != expected): '
                             f'{_listing(mismatched)}')


def extract_state_dict(checkpoint: Any,
                       what: str,
                       wrappers: Sequence[str] = ('state_dict', )) -> dict:
    """The state dict in a loaded checkpoint, checked to be one.

    Args:
        checkpoint: What the checkpoint file holds.
        what (str): Starts the messages, naming the file, e.g.
            ``'checkpoint x.pth'``.
        wrappers (Sequence[str]): Keys the state dict may be under, tried in
            order; the first ``checkpoint`` has (with a value that is not a
            tensor) is taken, or else ``checkpoint`` itself (a bare state
            dict).

    Returns:
        dict: The state dict, a dict of tensors keyed by str.

    Raises:
        StateDictError: If ``checkpoint`` is not a dict, the entry taken is
            not a dict, or a key of the state dict is not a str or a value
            not a tensor. The message says what was expected and gives the
            type names of what was found, not the file's content.
    """
    expected = 'expected a state dict (a dict of tensors keyed by str)'
    if wrappers:
        expected += ', bare or under ' + _either(wrappers)
    if not isinstance(checkpoint, dict):
        raise StateDictError(f'{what} holds a {type(checkpoint).__name__}, '
                             f'not a dict; {expected}')
    state_dict, where = checkpoint, ''
    for wrapper in wrappers:
        if wrapper in checkpoint and not isinstance(checkpoint[wrapper],
                                                    torch.Tensor):
            state_dict, where = checkpoint[wrapper], f' in {wrapper!r}'
            if not isinstance(state_dict, dict):
                raise StateDictError(
                    f'{what} entry {wrapper!r} is a '
                    f'{type(state_dict).__name__}, not a dict; {expected}')
            break
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise StateDictError(f'{what} has a key of type '
                                 f'{type(key).__name__}{where}, not str; '
                                 f'{expected}')
        if not isinstance(value, torch.Tensor):
            raise StateDictError(
                f'{what} entry {describe(key, 120)} is not a tensor '
                f'(type {type(value).__name__}{where}); {expected}')
    return state_dict


def _either(names: Sequence[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(name) for name in names]
    if len(quoted) == 1:
        return quoted[0]
    return ', '.join(quoted[:-1]) + ' or ' + quoted[-1]


def strip_module_prefix(state_dict: Dict[str, torch.Tensor]) -> dict:
    """The state dict with the ``module.`` of a DDP wrapper removed.

    Raises:
        StateDictError: If a key is there both with and without it (one of
            the two would be dropped).
    """
    stripped = {}
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        if name in stripped:
            raise StateDictError(
                f'the state dict holds {shorten(name, 100)!r} both with and '
                'without the module. prefix of a DDP wrapper')
        stripped[name] = value
    return stripped


def load_state_dict_from(path: str,
                         prefix: Optional[str] = None,
                         map_location: str = 'cpu') -> dict:
    """The state dict of a checkpoint file (under ``state_dict`` or bare),
    ``module.`` removed; with ``prefix``, only its keys under that prefix,
    the prefix removed (as MMEngine's ``_load_checkpoint_with_prefix``).

    Raises:
        StateDictError: If the file holds no state dict (see
            :func:`extract_state_dict`) or none of its keys is under
            ``prefix``.
    """
    if prefix is not None and (not isinstance(prefix, str) or not prefix):
        raise ValueError(f'prefix must be a non-empty str or None, got '
                         f'{prefix!r}')
    from mmengine.runner.checkpoint import _load_checkpoint
    state_dict = extract_state_dict(_load_checkpoint(path, map_location),
                                    f'checkpoint {path}')
    if prefix is not None:
        if not prefix.endswith('.'):
            prefix += '.'
        state_dict = {
            key[len(prefix):]: value
            for key, value in state_dict.items() if key.startswith(prefix)
        }
        if not state_dict:
            raise StateDictError(f'checkpoint {path} has no keys under the '
                                 f'prefix {prefix!r}')
    return strip_module_prefix(state_dict)


def load_pretrained_strictly(module: torch.nn.Module, init_cfg: dict) -> None:
    """Load ``init_cfg=dict(type='Pretrained', checkpoint, prefix=None)``
    into ``module``, refusing a checkpoint that does not match it exactly
    (MMEngine's ``PretrainedInit`` only logs the mismatch and goes on)."""
    if not isinstance(init_cfg.get('checkpoint'), str):
        raise ValueError('a Pretrained init_cfg needs checkpoint=PATH, got '
                         f'{init_cfg.get("checkpoint")!r}')
    path, prefix = init_cfg['checkpoint'], init_cfg.get('prefix')
    state_dict = load_state_dict_from(path, prefix,
                                      init_cfg.get('map_location', 'cpu'))
    check_state_dict(
        module.state_dict(), state_dict,
        f'checkpoint {path} (prefix {prefix!r}) and {type(module).__name__}')
    module.load_state_dict(state_dict, strict=False)
