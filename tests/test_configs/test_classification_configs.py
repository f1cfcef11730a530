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
    assert (cosine.begin, cosine.end) == (5, 100)
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1)
    steps = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert steps == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs'
    ]
    assert 'custom_hooks' not in cfg or not cfg.custom_hooks
    ema = load('cotnet50_8xb64-ema_in1k.py')
    assert ema.custom_hooks == [
        dict(type='EMAHook', momentum=1e-4, update_buffers=True,
             priority='ABOVE_NORMAL')
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
    # every official yaml: warmup_lr 1e-4 (absolute), min_lr 1e-5
    assert (warmup.type, warmup.start_lr) == ('LinearWarmupLR', 1e-4)
    assert cosine.eta_min == 1e-5
    assert cfg.custom_hooks[0].type == 'EMAHook'
    assert cfg.custom_hooks[0].momentum == 1e-4
    pipeline = cfg.train_dataloader.dataset.pipeline
    rand = [t for t in pipeline if t.type == 'RandAugment'][0]
    assert (rand.num_policies, rand.magnitude_level,
            rand.magnitude_std) == (2, 15, 0.5)
    crop = [t for t in pipeline if t.type == 'RandomResizedCrop'][0]
    assert crop.interpolation == 'bicubic'


def official_resolution(name):
    """(train size, test resize, crop) of the official default_cfg each
    config's model trains and tests with: cot_basic 224 / crop_pct 0.875
    for all but SE-CoTNetD-152, cot_s 256 / 0.888 for se_cotnetd_152 and
    cot_l 320 / 0.909 for se_cotnetd_152_L (resize = floor(size / crop_pct),
    as the official transforms)."""
    size, crop_pct = ((320, 0.909) if '320px' in name else
                      (256, 0.888) if 'se-cotnetd152' in name else
                      (224, 0.875))
    return size, int(size / crop_pct), size


@pytest.mark.parametrize('name', [n for n in NAMES if 'in1k' in n])
def test_resolution_and_interpolation_as_official(name):
    """Every ImageNet config trains and tests at its model's official
    resolution, and tests as the official evaluator: bicubic (PIL) resize
    of the short edge, centre crop."""
    cfg = load(name)
    size, resize, crop = official_resolution(name)
    train = cfg.train_dataloader.dataset.pipeline
    assert [t.scale for t in train if t.type == 'RandomResizedCrop'] == [
        size]
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        steps = {t.type: t for t in loader.dataset.pipeline}
        assert steps['ResizeEdge'].scale == resize
        assert steps['ResizeEdge'].edge == 'short'
        assert (steps['ResizeEdge'].backend,
                steps['ResizeEdge'].interpolation) == ('pillow', 'bicubic')
        assert steps['CenterCrop'].crop_size == crop


@pytest.mark.parametrize(
    'name', [n for n in NAMES if '-ema' in n or '350e' in n])
def test_ema_averages_the_batch_norm_statistics(name):
    """The config's EMA hook averages BN running statistics as the official
    ModelEmaV2 does (the whole state dict), rather than copying the live
    model's: after values v_0, v_1, v_2 the average is
    e_0 = v_0, e_t = (1 - m) e_{t-1} + m v_t, m = 1e-4."""
    from types import SimpleNamespace

    from mmengine.registry import HOOKS
    [hook_cfg] = [h for h in load(name).custom_hooks
                  if h.type == 'EMAHook']
    # the runner takes the priority, the hook the rest
    hook = HOOKS.build({k: v for k, v in hook_cfg.items() if k != 'priority'})
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 2, 1), torch.nn.BatchNorm2d(2))
    runner = SimpleNamespace(model=model, iter=0, epoch=0)
    hook.before_run(runner)
    momentum = hook_cfg.momentum
    expected = None
    for step, value in enumerate((10., 1000., -500.)):
        model[1].running_mean.fill_(value)
        model[0].weight.data.fill_(value)
        runner.iter = step
        hook.after_train_iter(runner, step)
        expected = value if expected is None else (
            (1 - momentum) * expected + momentum * value)
    averaged = hook.ema_model.module
    for tensor in (averaged[1].running_mean, averaged[0].weight):
        torch.testing.assert_close(
            tensor, torch.full_like(tensor, expected), rtol=1e-6, atol=0)
    assert averaged[1].running_mean[0] != model[1].running_mean[0]


def official_rand_augment_argument(op, level, crop):
    """The argument JDAI-CV/CoTNet's datasets/rand_augment.py gives ``op`` at
    ``level`` (its own formulas: level / 10 times the level-10 value; pixels
    for Translate and Cutout), in mmpretrain's terms (an enhance factor
    1 + m, a translation as a fraction of the crop)."""
    scale = level / 10
    return {
        'Rotate': 30 * scale,
        'Shear': 0.3 * scale,
        'Translate': 100 * scale / crop,
        'ColorTransform': 1.8 * scale + 0.1 - 1,
        'Contrast': 1.8 * scale + 0.1 - 1,
        'Brightness': 1.8 * scale + 0.1 - 1,
        'Sharpness': 1.8 * scale + 0.1 - 1,
        'SolarizeAdd': 110 * scale,
        'Solarize': int(256 * scale),  # threshold
        'Posterize': int(4 * scale),  # bits kept
        'Cutout': 2 * int(40 * scale) + 1,  # side of the square, px
    }.get(op)


@pytest.mark.parametrize('name', [n for n, *_ in ADVANCED])
def test_rand_augment_is_the_official_one(name):
    """m15 with std 0.5, clipped at level 15 (the official MAX_LEVEL), two of
    the 16 official ops, each argument the official one at every level."""
    import numpy as np
    from mmpretrain.registry import TRANSFORMS
    cfg = load(name)
    pipeline = cfg.train_dataloader.dataset.pipeline
    [crop] = [t.scale for t in pipeline if t.type == 'RandomResizedCrop']
    [rand] = [t for t in pipeline if t.type == 'RandAugment']
    assert (rand.num_policies, rand.magnitude_level, rand.magnitude_std,
            rand.total_level) == (2, 15, 0.5, 15)
    assert sorted(p['type'] for p in rand.policies) == sorted([
        'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
        'Solarize', 'SolarizeAdd', 'ColorTransform', 'Contrast',
        'Brightness', 'Sharpness', 'Shear', 'Shear', 'Translate',
        'Translate', 'Cutout'
    ])
    for policy in rand.policies:
        if 'magnitude_range' not in policy:
            continue
        for level in (0, 3.7, 10, 12.5, 14.2, 15):
            op = TRANSFORMS.build(
                dict(policy, magnitude_level=level, magnitude_std=0,
                     total_level=rand.total_level))
            got = op.random_magnitude()
            want = official_rand_augment_argument(policy['type'], level,
                                                  crop)
            if policy['type'] in ('Posterize', 'Solarize'):
                # on integer pixels and bit counts mmpretrain's threshold
                # and bits act as their ceiling, the official ones as int
                assert int(np.ceil(got)) == want, (policy, level)
            elif policy['type'] == 'Cutout':
                assert abs(int(got) - want) <= 1, level
            else:
                assert got == pytest.approx(want, abs=1e-6), (policy, level)
    step = TRANSFORMS.build(dict(rand))
    image = np.random.default_rng(0).integers(0, 256, (crop, crop, 3),
                                              dtype=np.uint8)
    for _ in range(20):
        out = step(dict(img=image.copy(), img_shape=image.shape[:2]))
        assert out['img'].shape == image.shape
