"""LinearWarmupLR: LinearLR from an absolute learning rate (timm's
warmup_lr), the same schedule as LinearLR with start_factor = start_lr / lr
for any lr, --auto-scale-lr's included."""
import pytest
import torch
from mmengine.optim import LinearLR, OptimWrapper

from mmcot.engine import LinearWarmupLR


def optimizer(*lrs):
    return torch.optim.SGD([{
        'params': [torch.nn.Parameter(torch.zeros(1))],
        'lr': lr
    } for lr in lrs])


def lrs(scheduler, opt, steps):
    values = []
    for _ in range(steps):
        values.append(opt.param_groups[0]['lr'])
        opt.step()
        scheduler.step()
    return values


@pytest.mark.parametrize('lr', [0.2, 0.25, 0.8])
def test_starts_at_start_lr_and_matches_linear_lr(lr):
    opt = optimizer(lr)
    warm = LinearWarmupLR(OptimWrapper(opt), start_lr=1e-4, end=10,
                          by_epoch=False)
    got = lrs(warm, opt, 12)
    want_opt = optimizer(lr)
    want = lrs(LinearLR(want_opt, start_factor=1e-4 / lr, end=10,
                        by_epoch=False), want_opt, 12)
    assert got[0] == pytest.approx(1e-4)
    assert got == pytest.approx(want)
    assert got[-1] == pytest.approx(lr)


def test_epoch_config_converts_to_iterations():
    opt = optimizer(0.2)
    warm = LinearWarmupLR.build_iter_from_epoch(
        optimizer=opt, start_lr=1e-4, begin=0, end=5, by_epoch=True,
        epoch_length=4)
    assert (warm.begin, warm.end, warm.by_epoch) == (0, 20, False)
    got = lrs(warm, opt, 21)
    assert got[0] == pytest.approx(1e-4) and got[20] == pytest.approx(0.2)


@pytest.mark.parametrize('lrs_, kwargs, message', [
    ((0.2, ), dict(start_lr=0.3), r'start_lr must be in \(0, 0.2\]'),
    ((0.2, ), dict(start_lr=0.0), r'start_lr must be in \(0, 0.2\]'),
    ((0.2, 0.1), dict(start_lr=1e-4), 'different learning rates'),
    ((0.2, ), dict(start_lr=1e-4, start_factor=0.1), 'not start_factor'),
    ((0.2, ), dict(start_lr='1e-4'), "start_lr must be a number, got '1e-4'"),
    ((0.2, ), dict(start_lr=None), 'start_lr must be a number, got None'),
])
def test_bad_arguments(lrs_, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinearWarmupLR(optimizer(*lrs_), end=5, **kwargs)


def test_needs_an_optimizer():
    with pytest.raises(TypeError, match='optimizer must be a torch '
                       'optimizer or an MMEngine optim wrapper, got dict'):
        LinearWarmupLR(dict(lr=0.1), start_lr=1e-4, end=5)
