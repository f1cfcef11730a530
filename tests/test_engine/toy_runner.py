"""A small MMEngine runner (a two-layer model with BatchNorm on random
vectors) whose checkpoints hold everything a real run saves: message hub,
optimizer, parameter schedulers and EMA weights."""
import itertools

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import Dataset

_RUNS = itertools.count()


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8),
                                 nn.Linear(8, 2))

    def forward(self, x, y, mode='tensor'):
        out = self.net(x)
        if mode == 'loss':
            return {'loss': ((out - y)**2).mean()}
        return out


class ToyDataset(Dataset):

    def __len__(self):
        return 32

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        return dict(x=torch.randn(4, generator=generator),
                    y=torch.randn(2, generator=generator))


def build_toy_runner(work_dir: str, max_epochs: int = 2, **overrides):
    """A runner with AdamW, warm-up + step schedules and an EMA hook,
    checkpointing every epoch; the same initial weights every time."""
    torch.manual_seed(0)
    cfg = dict(
        model=ToyModel(),
        work_dir=work_dir,
        train_dataloader=dict(dataset=ToyDataset(),
                              sampler=dict(type='DefaultSampler',
                                           shuffle=True),
                              batch_size=8,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=3),
            dict(type='MultiStepLR', milestones=[1], by_epoch=True)
        ],
        custom_hooks=[dict(type='EMAHook', momentum=0.01)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0, deterministic=True),
        default_scope='mmengine',
        experiment_name=f'toy_{next(_RUNS)}',
    )
    cfg.update(overrides)
    return Runner(**cfg)


def train_toy_runner(work_dir: str, max_epochs: int = 2, **overrides):
    """Build and train a toy runner in this process, leaving MMEngine's
    current default scope as it was for the tests that follow."""
    with DefaultScope.overwrite_default_scope('mmengine'):
        build_toy_runner(work_dir, max_epochs, **overrides).train()
