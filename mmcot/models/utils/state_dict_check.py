"""Key-by-key, shape-by-shape comparison of state dicts, with a readable
report: a checkpoint of the wrong variant must fail loudly, not load half."""
from typing import Dict, Iterable, List, Optional

import torch


def _listing(items: List[str], limit: int = 20) -> str:
    if not items:
        return 'none'
    shown = ', '.join(items[:limit])
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
        raise ValueError(f'{what} do not match:\n'
                         f'  missing keys: {_listing(missing)}\n'
                         f'  unexpected keys: {_listing(unexpected)}\n'
                         f'  shape mismatches (given != expected): '
                         f'{_listing(mismatched)}')


def strip_module_prefix(state_dict: Dict[str, torch.Tensor]) -> dict:
    """The state dict with the ``module.`` of a DDP wrapper removed."""
    return {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in state_dict.items()
    }


def load_state_dict_from(path: str,
                         prefix: Optional[str] = None,
                         map_location: str = 'cpu') -> dict:
    """The state dict of a checkpoint file (under ``state_dict`` or bare),
    ``module.`` removed; with ``prefix``, only its keys under that prefix,
    the prefix removed."""
    from mmengine.runner.checkpoint import (_load_checkpoint,
                                            _load_checkpoint_with_prefix)
    if prefix is None:
        checkpoint = _load_checkpoint(path, map_location)
        state_dict = checkpoint.get('state_dict', checkpoint)
    else:
        state_dict = _load_checkpoint_with_prefix(prefix, path, map_location)
    return strip_module_prefix(state_dict)


def load_pretrained_strictly(module: torch.nn.Module, init_cfg: dict) -> None:
    """Load ``init_cfg=dict(type='Pretrained', checkpoint, prefix=None)``
    into ``module``, refusing a checkpoint that does not match it exactly
    (MMEngine's ``PretrainedInit`` only logs the mismatch and goes on)."""
    path, prefix = init_cfg['checkpoint'], init_cfg.get('prefix')
    state_dict = load_state_dict_from(path, prefix,
                                      init_cfg.get('map_location', 'cpu'))
    check_state_dict(
        module.state_dict(), state_dict,
        f'checkpoint {path} (prefix {prefix!r}) and {type(module).__name__}')
    module.load_state_dict(state_dict, strict=False)
