"""Every classification config loads, builds its model, and states the
paper's recipe; official checkpoints fit the models the configs build."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmcot  # noqa: F401
from mmcot.models.utils import OFFICIAL_VARIANTS, convert_official_state_dict

from ..conftest import REPO

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'cotnet', '*.py')))
NAMES = [osp.basename(c) for c in CONFIGS]

# official model name -> config token
TOKENS = {
    'cotnet50': 'cotnet50',
    'cotnet101': 'cotnet101',
    'cotnext50_2x48d': 'cotnext50-2x48d',
    'cotnext101_2x48d': 'cotnext101-2x48d',
    'se_cotnetd_50': 'se-cotnetd50',
    'se_cotnetd_101': 'se-cotnetd101',
    'se_cotnetd_152': 'se-cotnetd152',
}


def load(name):
    return Config.fromfile(osp.join(REPO, 'configs', 'cotnet', name))


def build_model(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_every_variant_has_its_configs():
    for token in TOKENS.values():
        assert f'{token}_8xb64_in1k.py' in NAMES
        assert f'{token}_8xb64-ema_in1k.py' in NAMES
        assert any(n.startswith(token + '_') and '-350e_' in n for n in NAMES)
    assert 'se-cotnetd152_8xb64-350e_in1k-320px.py' in NAMES


@pytest.mark.parametrize('name', NAMES)
def test_config_builds_its_model(name):
    cfg = load(name)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports.imports == ['mmcot']
    model = build_model(cfg)
    assert type(model.backbone).__name__ == cfg.model.backbone.type
    size = cfg.test_dataloader.dataset.pipeline[-2].get('crop_size', 64)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, size, size), mode='tensor')
    assert logits.shape == (1, cfg.model.head.num_classes)


@pytest.mark.parametrize('variant', sorted(TOKENS))
def test_official_checkpoint_loads_strictly_into_config_model(variant):
    """The converted full-size official weights fit the model built from the
    variant's config, every key and shape."""
    with open(osp.join(REPO, 'tests', 'data', 'parity', 'manifests',
                       variant + '.json')) as f:
        manifest = json.load(f)
    official = {
        k: torch.zeros(s, dtype=torch.long if k.endswith('tracked') else
                       torch.float32)
        for k, s in manifest.items()
    }
    converted = convert_official_state_dict(official,
                                            OFFICIAL_VARIANTS[variant])
    model = build_model(load(f'{TOKENS[variant]}_8xb64_in1k.py'))
    model.load_state_dict(converted, strict=True)


def test_default_recipe():
    """Table 3: batch 512, SGD 0.9, lr 0.2, 5 warm-up epochs from ~0, cosine
    to 100 epochs, label smoothing 0.1, RandomResizedCrop 224 and flip."""
    cfg = load('cotnet50_8xb64_in1k.py')
    assert 8 * cfg.train_dataloader.batch_size == 512
    assert cfg.auto_scale_lr.base_batch_size == 512
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum) == ('SGD', 0.2,
                                                                  0.9)
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.start_factor <= 1e-6
    assert (warmup.begin, warmup.end) == (0, 5)
    assert cosine.type == 'CosineAnnealingLR'
    assert (cosine.begin, cosine.end, cfg.train_cfg.max_epochs) == (5, 100,
                                                                     100)
    assert cfg.model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1)
    steps = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert steps == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs'
    ]
    assert 'custom_hooks' not in cfg or not cfg.custom_hooks
    ema = load('cotnet50_8xb64-ema_in1k.py')
    assert ema.custom_hooks == [
        dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')
    ]
    assert ema.optim_wrapper == cfg.optim_wrapper


# (config, per-GPU batch, lr, weight decay, drop path) from the official
# cot_experiments/*/config.yaml
ADVANCED = [
    ('cotnet50_8xb80-350e_in1k.py', 80, 0.25, 4e-5, 0.1),
    ('cotnet101_8xb56-350e_in1k.py', 56, 0.175, 6e-5, 0.1),
    ('cotnext50-2x48d_8xb64-350e_in1k.py', 64, 0.2, 4e-5, 0.1),
    ('cotnext101-2x48d_8xb64-350e_in1k.py', 64, 0.2, 6e-5, 0.1),
    ('se-cotnetd50_8xb80-350e_in1k.py', 80, 0.25, 4e-5, 0.1),
    ('se-cotnetd101_8xb64-350e_in1k.py', 64, 0.2, 4e-5, 0.1),
    ('se-cotnetd152_8xb64-350e_in1k.py', 64, 0.2, 4e-5, 0.15),
    ('se-cotnetd152_8xb64-350e_in1k-320px.py', 64, 0.2, 4e-5, 0.15),
]


@pytest.mark.parametrize('name,batch,lr,wd,drop_path', ADVANCED)
def test_advanced_recipe(name, batch, lr, wd, drop_path):
    cfg = load(name)
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == 8 * batch
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.lr, optimizer.weight_decay) == (lr, wd)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    assert cfg.optim_wrapper.paramwise_cfg == dict(
        norm_decay_mult=0., bias_decay_mult=0.)
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.head.dropout_rate == 0.25
    assert cfg.model.train_cfg.augments == [
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == 5 and cosine.end == cfg.train_cfg.max_epochs == 350
    assert cosine.eta_min == 1e-5
    assert cfg.custom_hooks[0].type == 'EMAHook'
    assert cfg.custom_hooks[0].momentum == 1e-4
    pipeline = cfg.train_dataloader.dataset.pipeline
    rand = [t for t in pipeline if t.type == 'RandAugment'][0]
    assert (rand.num_policies, rand.magnitude_level,
            rand.magnitude_std) == (2, 15, 0.5)
    crop = [t for t in pipeline if t.type == 'RandomResizedCrop'][0]
    assert crop.interpolation == 'bicubic'
    assert crop.scale == (320 if '320px' in name else 224)
