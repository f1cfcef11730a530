"""detectron2's PreciseBN for MMEngine runners: the BatchNorm statistics
recomputed from training batches at the end of training."""
import itertools
from typing import Iterable

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop
from torch.nn.modules.batchnorm import _BatchNorm


def check_num_iters(num_iters) -> None:
    """A positive int (not a bool), else a ValueError naming it."""
    if type(num_iters) is not int or num_iters < 1:
        raise ValueError(
            f'num_iters must be a positive int, got {num_iters!r}')


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable,
                       num_iters: int) -> int:
    """Set the running mean and variance of each training BatchNorm layer of
    ``model`` (SyncBN included) to the mean, over the first ``num_iters``
    of ``batches`` and over the processes, of its batch statistics, the
    model run as in training (its data preprocessor in training mode,
    ``mode='loss'``) without gradients. Layers in eval mode (frozen stages,
    ``norm_eval``) keep theirs; the momentum is left as it was.

    A batch that fails leaves every layer's statistics as they were.

    Returns:
        int: the batches used (0: no layer to recompute, or no batch).
    """
    check_num_iters(num_iters)
    if is_model_wrapper(model):
        model = model.module
    if not callable(getattr(model, 'data_preprocessor', None)):
        raise TypeError('model must be an MMEngine model (with a '
                        f'data_preprocessor), got {type(model).__name__}')
    layers = [
        m for m in model.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    if not layers:
        return 0
    means = [torch.zeros_like(bn.running_mean) for bn in layers]
    variances = [torch.zeros_like(bn.running_var) for bn in layers]
    momentums = [bn.momentum for bn in layers]
    saved = [(bn.running_mean.clone(), bn.running_var.clone(),
              bn.num_batches_tracked.clone()) for bn in layers]
    used = 0
    try:
        for bn in layers:
            bn.momentum = 1.0  # the running statistics become the batch's
        for data in itertools.islice(batches, num_iters):
            model(**model.data_preprocessor(data, True), mode='loss')
            for i, bn in enumerate(layers):
                means[i] += bn.running_mean
                variances[i] += bn.running_var
            used += 1
    except BaseException:
        for bn, (mean, variance, tracked) in zip(layers, saved):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(variance)
            bn.num_batches_tracked.copy_(tracked)
        raise
    finally:
        for bn, momentum in zip(layers, momentums):
            bn.momentum = momentum
    if used:
        for bn, mean, variance in zip(layers, means, variances):
            for total, running in ((mean, bn.running_mean),
                                   (variance, bn.running_var)):
                total /= used
                all_reduce(total, op='mean')  # in place; one process: as is
                running.copy_(total)
    return used


@HOOKS.register_module()
class RecomputeBNHook(Hook):
    """Recompute the BatchNorm statistics from ``num_iters`` training
    batches (per process) after the last training epoch or iteration, and
    every ``interval`` epochs or iterations if ``interval`` > 0: detectron2's
    ``PreciseBN`` hook (``TEST.PRECISE_BN``), which the official CoTNet
    detection runs use (200 iterations, at the end of training).

    Unlike mmpretrain's ``PreciseBNHook``, the model runs as in training
    (``mode='loss'``: a detector's heads see the RoIs sampled for training,
    not test-time proposals), and the last recomputation always happens.
    Its priority runs it before the checkpoint of that epoch is saved and
    before the evaluation that follows.

    Args:
        num_iters (int): Training batches per recomputation. Default: 200.
        interval (int): Epochs (epoch-based loops) or iterations between
            recomputations before the end; 0: only at the end. Default: 0.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, num_iters: int = 200, interval: int = 0) -> None:
        check_num_iters(num_iters)
        if type(interval) is not int or interval < 0:
            raise ValueError(
                f'interval must be an int >= 0, got {interval!r}')
        self.num_iters = num_iters
        self.interval = interval

    def _recompute(self, runner) -> None:
        used = recompute_bn_stats(runner.model, runner.train_dataloader,
                                  self.num_iters)
        print_log(
            f'BatchNorm statistics recomputed from {used} training batches',
            logger='current')

    def after_train_epoch(self, runner) -> None:
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        periodic = self.interval and self.every_n_epochs(
            runner, self.interval)
        if periodic or self.is_last_train_epoch(runner):
            self._recompute(runner)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        periodic = self.interval and self.every_n_train_iters(
            runner, self.interval)
        if periodic or self.is_last_train_iter(runner):
            self._recompute(runner)
