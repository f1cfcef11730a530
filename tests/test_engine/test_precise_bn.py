"""RecomputeBNHook / recompute_bn_stats (detectron2's PreciseBN): the
running statistics become the mean of the batch statistics over the given
training batches, computed independently here from the inputs and the
weights; only training BatchNorm layers change; the model runs in loss
mode; the hook recomputes after the last epoch, before that checkpoint."""
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel

from mmcot.engine import RecomputeBNHook, recompute_bn_stats

from .toy_runner import ToyDataset, train_toy_runner


class TwoNorms(BaseModel):
    """A linear layer, a training BatchNorm and a frozen one; records the
    modes it runs in."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.frozen = nn.BatchNorm1d(6).eval()
        self.modes = []
        self.grad_enabled = []

    def forward(self, x, mode='tensor'):
        self.modes.append(mode)
        self.grad_enabled.append(torch.is_grad_enabled())
        out = self.frozen(self.bn(self.linear(x)))
        return {'loss': out.sum()} if mode == 'loss' else out


def batches(count, size=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [dict(x=torch.randn(size, 4, generator=g)) for _ in range(count)]


def test_running_statistics_become_the_mean_of_the_batch_statistics():
    torch.manual_seed(0)
    model = TwoNorms().train()
    model.frozen.eval()
    model.bn.momentum = 0.1
    frozen = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    weight = model.linear.weight.clone()
    data = batches(5)
    assert recompute_bn_stats(model, data, num_iters=3) == 3
    with torch.no_grad():
        features = [model.linear(d['x']) for d in data[:3]]
    want_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    want_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, want_mean)
    torch.testing.assert_close(model.bn.running_var, want_var)
    assert model.bn.momentum == 0.1
    assert model.modes == ['loss'] * 3
    assert model.grad_enabled == [False] * 3  # no graph is built
    assert torch.equal(model.linear.weight, weight)
    for key, value in model.frozen.state_dict().items():
        assert torch.equal(value, frozen[key]), key


def test_nothing_to_recompute():
    model = TwoNorms().eval()
    before = model.bn.running_mean.clone()
    assert recompute_bn_stats(model, batches(2), num_iters=2) == 0
    assert model.modes == [] and torch.equal(model.bn.running_mean, before)


def test_a_failing_batch_leaves_the_statistics_as_they_were():
    torch.manual_seed(0)
    model = TwoNorms().train()
    model.bn.running_mean.uniform_()
    before = {k: v.clone() for k, v in model.bn.state_dict().items()}
    data = batches(1) + [dict(x=torch.randn(5, 3))]  # the second: wrong width
    with pytest.raises(RuntimeError):
        recompute_bn_stats(model, data, num_iters=2)
    for key, value in model.bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.bn.momentum == 0.1


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_iters=0), 'num_iters must be a positive int'),
    (dict(num_iters=2.5), 'num_iters must be a positive int'),
    (dict(num_iters=True), 'num_iters must be a positive int'),
    (dict(interval=-1), 'interval must be an int >= 0'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecomputeBNHook(**kwargs)


@pytest.mark.parametrize('num_iters', [None, -1, '3'])
def test_bad_num_iters_of_the_function(num_iters):
    with pytest.raises(ValueError, match='num_iters must be a positive int'):
        recompute_bn_stats(TwoNorms().train(), batches(2), num_iters)


def test_the_function_needs_an_mmengine_model():
    with pytest.raises(TypeError, match='model must be an MMEngine model'):
        recompute_bn_stats(nn.Sequential(nn.BatchNorm1d(4)), batches(1), 1)


def batch_statistics(checkpoint, first_batches):
    """Mean over the first batches (of 8, in dataset order) of the batch
    mean and unbiased variance of the toy model's BatchNorm input, with the
    weights of ``checkpoint``."""
    state = torch.load(checkpoint, map_location='cpu',
                       weights_only=False)['state_dict']
    dataset = ToyDataset()
    means, variances = [], []
    for b in range(first_batches):
        x = torch.stack([dataset[i]['x'] for i in range(8 * b, 8 * b + 8)])
        features = x @ state['net.0.weight'].T + state['net.0.bias']
        means.append(features.mean(0))
        variances.append(features.var(0, unbiased=True))
    return (state, torch.stack(means).mean(0), torch.stack(variances).mean(0))


def test_hook_recomputes_after_the_last_epoch_before_its_checkpoint(
        tmp_path):
    train_toy_runner(
        str(tmp_path),
        max_epochs=2,
        train_dataloader=dict(dataset=ToyDataset(),
                              sampler=dict(type='DefaultSampler',
                                           shuffle=False),
                              batch_size=8,
                              collate_fn=dict(type='default_collate')),
        custom_hooks=[dict(type='RecomputeBNHook', num_iters=2)])
    state, mean, var = batch_statistics(tmp_path / 'epoch_2.pth', 2)
    torch.testing.assert_close(state['net.1.running_mean'], mean)
    torch.testing.assert_close(state['net.1.running_var'], var)
    # not before the last epoch (interval 0): epoch 1 keeps the running
    # averages of training
    state, mean, _ = batch_statistics(tmp_path / 'epoch_1.pth', 2)
    assert not torch.allclose(state['net.1.running_mean'], mean, atol=1e-3)
