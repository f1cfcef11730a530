"""Every UPerNet config builds its segmentor in mmseg's scope with its CoT
backbone and is mmseg's ResNet-50 UPerNet config otherwise; a reduced one
computes losses and predictions."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

import mmcot  # noqa: F401

from ..conftest import REPO

TOKENS = {
    'cotnet50': ('CoTNet', 50),
    'cotnet101': ('CoTNet', 101),
    'cotnext50': ('CoTNeXt', 50),
    'cotnext101': ('CoTNeXt', 101),
    'se-cotnetd50': ('SECoTNetD', 50),
    'se-cotnetd101': ('SECoTNetD', 101),
}
#: mmseg's ResNet-50 UPerNet config each dataset's configs follow, and the
#: number of classes
DATASETS = {
    '4xb4-160k_ade20k-512x512': 150,
    '4xb2-80k_cityscapes-512x1024': 19,
}
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', 'upernet', '*.py')))
PAPER_CONFIGS = [c for c in CONFIGS if '_shapes-' not in c]
SYNCBN = dict(type='SyncBN', requires_grad=True)


def load(path):
    return Config.fromfile(osp.join(REPO, path))


def build(cfg):
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_six_backbones_on_two_datasets():
    names = {osp.basename(c)[:-len('.py')] for c in PAPER_CONFIGS}
    assert names == {
        f'upernet_{token}_{dataset}'
        for token in TOKENS for dataset in DATASETS
    }


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_its_segmentor(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports.imports == ['mmcot']
    model = build(cfg)
    assert type(model).__name__ == 'EncoderDecoder'
    assert type(model.backbone).__module__.startswith('mmcot.')
    assert type(model.decode_head).__name__ == 'UPerHead'
    assert type(model.auxiliary_head).__name__ == 'FCNHead'
    assert cfg.default_hooks.checkpoint.backend_args == dict(
        backend='atomic_local')


@pytest.mark.parametrize('path', PAPER_CONFIGS)
def test_mmseg_recipe_with_a_cot_backbone(path):
    """The config is mmseg's ResNet-50 UPerNet config of its dataset with
    the backbone swapped: everything else (heads, SyncBN, crops, schedule,
    data) is mmseg's."""
    name = osp.basename(path)[:-len('.py')]
    _, token, dataset = name.split('_', 2)
    cfg = load(path)
    import mmseg
    upstream = Config.fromfile(
        osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs', 'upernet',
            f'upernet_r50_{dataset}.py'))
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.depth) == TOKENS[token]
    assert backbone.norm_cfg == SYNCBN and not backbone.norm_eval
    assert backbone.get('frozen_stages', -1) == -1  # as mmseg's ResNets
    assert backbone.out_indices == (0, 1, 2, 3)
    init = backbone.init_cfg
    assert (init.type, init.prefix) == ('Pretrained', 'backbone.')
    assert init.checkpoint.startswith(f'checkpoints/{token}')
    assert cfg.model.pretrained is None
    assert cfg.model.decode_head.num_classes == DATASETS[dataset]
    for key in set(cfg) | set(upstream):
        if key.startswith('cot_') or key in ('custom_imports', ):
            continue
        mine, theirs = (without_scope(c.to_dict().get(key))
                        for c in (cfg, upstream))
        if key == 'model':
            mine = {k: v for k, v in mine.items() if k != 'backbone'}
            theirs = {k: v for k, v in theirs.items() if k != 'backbone'}
            theirs['pretrained'] = None
        elif key == 'default_hooks':
            theirs['checkpoint']['backend_args'] = dict(
                backend='atomic_local')
        assert mine == theirs, key


def without_scope(node):
    """``node`` without the ``_scope_`` keys mmengine adds to what comes
    from a ``mmseg::`` base."""
    if isinstance(node, dict):
        return {
            k: without_scope(v)
            for k, v in node.items() if k != '_scope_'
        }
    if isinstance(node, (list, tuple)):
        return type(node)(without_scope(v) for v in node)
    return node


def reduced(path):
    cfg = load(path)
    cfg.model.backbone.stage_blocks = (1, 1, 1, 1)
    cfg.model.backbone.init_cfg = None
    return cfg


@pytest.mark.parametrize('dataset', sorted(DATASETS))
def test_segmentor_loss_and_predict(dataset):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = revert_sync_batchnorm(
        build(reduced(f'configs/upernet/upernet_cotnet50_{dataset}.py')))
    classes = DATASETS[dataset]
    samples = []
    for _ in range(2):
        sample = SegDataSample(
            metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96),
                          pad_shape=(64, 96)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, classes, (1, 64, 96)))
        samples.append(sample)
    packed = dict(
        inputs=[torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=samples)
    model.data_preprocessor.size = (64, 96)  # the crop size: no padding
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert set(losses) >= {'decode.loss_ce', 'aux.loss_ce'}
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.layer4[0].conv2.embed[0].weight.grad is not None

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False),
                        mode='predict')
    assert [r.pred_sem_seg.data.shape for r in results] == [(1, 64, 96)] * 2
    assert all(r.seg_logits.data.shape == (classes, 64, 96) for r in results)


def test_mmcot_imports_without_mmseg():
    """mmseg is needed by the UPerNet configs only: without it, mmcot
    imports and its backbones build."""
    code = '\n'.join([
        'import sys',
        'class NoMMSeg:',
        '    def find_spec(self, name, path=None, target=None):',
        "        if name.split('.')[0] == 'mmseg':",
        "            raise ImportError('mmseg is not installed')",
        'sys.meta_path.insert(0, NoMMSeg())',
        'import mmcot',
        'from mmengine.registry import MODELS',
        "backbone = MODELS.build(dict(type='CoTNet', depth=50))",
        "print('mmseg' in sys.modules, type(backbone).__name__)",
    ])
    result = subprocess.run([sys.executable, '-c', code],
                            cwd=REPO,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['False', 'CoTNet']
