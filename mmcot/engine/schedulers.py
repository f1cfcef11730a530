"""Learning-rate schedules of the official recipes that MMEngine lacks."""
from typing import Union

from mmengine.optim import BaseOptimWrapper, LinearLR
from mmengine.registry import PARAM_SCHEDULERS
from torch.optim import Optimizer


@PARAM_SCHEDULERS.register_module()
class LinearWarmupLR(LinearLR):
    """MMEngine's ``LinearLR`` from an absolute learning rate: the first
    step runs at ``start_lr`` whatever the optimizer's learning rate (the
    config's, or the one ``--auto-scale-lr`` scaled), which is reached
    linearly at ``end``: timm's warm-up (``warmup_lr``), 1e-4 in every
    official CoTNet recipe.

    Args:
        optimizer (Optimizer | OptimWrapper): Its parameter groups share
            one learning rate.
        start_lr (float): The first step's learning rate, in (0, the
            optimizer's learning rate].
        **kwargs: ``LinearLR``'s other arguments (``begin``, ``end``,
            ``by_epoch``, ...), ``start_factor`` excepted.
    """

    def __init__(self, optimizer: Union[Optimizer, BaseOptimWrapper],
                 start_lr: float, **kwargs) -> None:
        if 'start_factor' in kwargs:
            raise ValueError('LinearWarmupLR takes start_lr, an absolute '
                             'learning rate, not start_factor')
        if type(start_lr) not in (int, float):
            raise ValueError(f'start_lr must be a number, got {start_lr!r}')
        inner = (optimizer.optimizer
                 if isinstance(optimizer, BaseOptimWrapper) else optimizer)
        if not isinstance(inner, Optimizer):
            raise TypeError('optimizer must be a torch optimizer or an '
                            'MMEngine optim wrapper, got '
                            f'{type(optimizer).__name__}')
        groups = inner.param_groups
        lrs = sorted({group.get('initial_lr', group['lr'])
                      for group in groups})
        if len(lrs) != 1:
            raise ValueError(
                f'start_lr: the parameter groups have different learning '
                f'rates {lrs}; an absolute start needs a single one')
        if not 0 < start_lr <= lrs[0]:
            raise ValueError(f'start_lr must be in (0, {lrs[0]}] (the '
                             f"optimizer's lr), got {start_lr}")
        self.start_lr = start_lr
        super().__init__(optimizer, start_factor=start_lr / lrs[0], **kwargs)
