"""tools/model_converters/cotnet_to_mmcot.py on official-layout checkpoints
(formula weights in the official key layout, as the official code saves
them), and what users do with the converted file."""
import argparse
import errno
import json
import os
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import MODELS

from mmcot.engine import load_local_checkpoint
from mmcot.models.utils import unwrap_state_dict

from ..conftest import REPO, run_tool
from ..test_models.parity_formula import state_dict as formula_state_dict

MANIFESTS = osp.join(REPO, 'tests', 'data', 'parity', 'manifests')
CONVERTER = 'tools/model_converters/cotnet_to_mmcot.py'
COTNET50 = 'configs/cotnet/cotnet50_8xb64_in1k.py'


def official_weights(variant):
    with open(osp.join(MANIFESTS, variant + '.json')) as f:
        manifest = json.load(f)
    return {
        k: v.float() if v.is_floating_point() else v
        for k, v in formula_state_dict(manifest).items()
    }


@pytest.fixture(scope='module')
def official_cotnet50(tmp_path_factory):
    """An official training checkpoint: DDP ``module.`` keys under
    ``state_dict`` and ``state_dict_ema``, plus non-tensor entries (timm's
    checkpoint saver pickles the argparse namespace)."""
    weights = official_weights('cotnet50')
    path = tmp_path_factory.mktemp('official') / 'cotnet50.pth.tar'
    torch.save(
        dict(
            epoch=349,
            arch='cotnet50',
            args=argparse.Namespace(model='cotnet50', lr=0.25),
            state_dict={'module.' + k: v
                        for k, v in weights.items()},
            state_dict_ema={k: v * 2 if v.is_floating_point() else v
                            for k, v in weights.items()}), path)
    return str(path), weights


@pytest.fixture(scope='module')
def converted_cotnet50(official_cotnet50, tmp_path_factory):
    src, _ = official_cotnet50
    dst = str(tmp_path_factory.mktemp('converted') / 'cotnet50_mmcot.pth')
    result = run_tool(CONVERTER, src, dst)
    assert 'cotnet50' in result.stdout
    return dst


def test_unwrap_state_dict_variants():
    weights = {'conv1.weight': torch.ones(1), 'fc.bias': torch.zeros(1)}
    prefixed = {'module.' + k: v for k, v in weights.items()}
    for checkpoint in (weights, dict(state_dict=weights), dict(model=weights),
                       dict(state_dict=prefixed), prefixed):
        assert unwrap_state_dict(checkpoint).keys() == weights.keys()
    ema = dict(state_dict=weights, state_dict_ema={'conv1.weight': -1})
    with pytest.raises(ValueError, match="'conv1.weight' is not a tensor"):
        unwrap_state_dict(ema, use_ema=True)
    with pytest.raises(ValueError, match='no state_dict_ema'):
        unwrap_state_dict(dict(state_dict=weights), use_ema=True)
    with pytest.raises(ValueError,
                       match="state_dict_ema is a list, not a dict"):
        unwrap_state_dict(dict(state_dict_ema=[weights]), use_ema=True)


def test_converted_checkpoint_loads_into_mmpretrain(converted_cotnet50,
                                                    official_cotnet50):
    from mmpretrain.apis import init_model

    from mmcot.engine import check_checkpoint_matches
    _, weights = official_cotnet50
    model = init_model(osp.join(REPO, COTNET50), converted_cotnet50)
    check_checkpoint_matches(model, converted_cotnet50)  # strict
    state = model.state_dict()
    # by default the EMA weights (twice the weights in this checkpoint)
    assert torch.equal(state['head.fc.weight'], 2 * weights['fc.weight'])
    assert torch.equal(state['backbone.layer3.5.conv2.embed.3.weight'],
                       2 * weights['layer3.5.conv2.embed.3.weight'])


def test_ema_weights_by_default_and_the_weights_on_request(
        official_cotnet50, tmp_path):
    """Both in the checkpoint: the EMA weights, whose accuracy the official
    validation reports, unless --no-ema; the output says which, and how to
    take the other."""
    src, weights = official_cotnet50
    for option, factor, said in ((None, 2, 'converted state_dict_ema'),
                                 ('--ema', 2, 'converted state_dict_ema'),
                                 ('--no-ema', 1, 'converted state_dict ')):
        dst = str(tmp_path / f'{option}.pth')
        result = run_tool(CONVERTER, src, dst, *([option] if option else []))
        assert said in result.stdout
        assert ('--no-ema converts state_dict' in result.stdout) == (
            factor == 2)
        converted = torch.load(dst)
        assert torch.equal(converted['state_dict']['backbone.conv1.weight'],
                           factor * weights['conv1.weight'])
        assert converted['meta']['ema'] == (factor == 2)


@pytest.mark.parametrize('content, option, message', [
    (dict(state_dict='weights'), '--ema', '--ema: it has no state_dict_ema'),
    (dict(state_dict_ema='weights'), '--no-ema',
     '--no-ema: it holds state_dict_ema only'),
    ('tensor', None, 'it holds a Tensor, not a checkpoint dict'),
    (dict(state_dict=dict(epoch=3)), None,
     "checkpoint entry 'epoch' is not a tensor"),
    ('cut', None, 'unknown variant: cotnet* with stage blocks (3, 4, 5, 3)'),
    ('int_key', None, 'checkpoint has a key of type int, not str; expected '
     'a state dict (a dict of tensors keyed by str)'),
])
def test_what_cannot_be_converted_is_one_error_line(official_cotnet50,
                                                    tmp_path, content,
                                                    option, message):
    _, weights = official_cotnet50
    if content == 'tensor':
        content = torch.zeros(3)
    elif content == 'int_key':
        content = {1: torch.zeros(1)}
    elif content == 'cut':
        content = {k: v for k, v in weights.items()
                   if not k.startswith('layer3.5.')}
    else:
        content = {
            key: dict(weights) if value == 'weights' else value
            for key, value in content.items()
        }
    src = tmp_path / 'src.pth'
    torch.save(content, src)
    dst = tmp_path / 'out.pth'
    result = run_tool(CONVERTER, str(src), str(dst),
                      *([option] if option else []), check=False)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f'error: {src} was not converted: ')
    assert message in line
    assert os.listdir(tmp_path) == ['src.pth']


KEY_EMBED = 'layer1.0.conv2.key_embed.0.weight'
STATE_DICT = ("expected a state dict (a dict of tensors keyed by str), bare "
              "or under 'state_dict', 'model' or 'state_dict_ema'")


@pytest.mark.parametrize('content, option, said', [
    ({1: torch.zeros(1)}, None,
     f'was not converted: checkpoint has a key of type int, not str; '
     f'{STATE_DICT}'),
    ({'state_dict': {b'k': torch.zeros(1)}}, None,
     "was not converted: checkpoint has a key of type bytes in "
     "'state_dict', not str"),
    ({KEY_EMBED: torch.tensor(1.0)}, None,
     f"was not converted: official checkpoint entry '{KEY_EMBED}' has shape "
     '(); expected a convolution weight'),
    ({KEY_EMBED: torch.tensor(1.0)}, 'cotnet50',
     'is not a cotnet50 checkpoint: official checkpoint keys and backbone '
     "{'type': 'CoTNet', 'depth': 50} do not match:"),
    ([1, 2], None, 'was not converted: it holds a list, not a checkpoint '
     'dict'),
    (torch.zeros(2), None, 'was not converted: it holds a Tensor, not a '
     'checkpoint dict'),
    ({'state_dict': [1]}, None,
     f"was not converted: checkpoint entry 'state_dict' is a list, not a "
     f'dict; {STATE_DICT}'),
    ({'state_dict_ema': None}, None,
     "checkpoint entry 'state_dict_ema' is a NoneType, not a dict"),
    ({'model': {'conv1.weight': 'x'}}, None,
     "checkpoint entry 'conv1.weight' is not a tensor (type str in "
     "'model')"),
])
def test_crafted_checkpoint_is_an_error_naming_it(content, option, said,
                                                  tmp_path, monkeypatch):
    """Files torch's own reader loads (tensors and containers) but that are
    not official state dicts: one ``error:`` line naming the file, what was
    expected and the type of what was found; no output. In process: the
    error line is the SystemExit the tool raises."""
    src, dst = tmp_path / 'crafted.pth', tmp_path / 'out.pth'
    torch.save(content, src)
    argv = [CONVERTER, str(src), str(dst)]
    monkeypatch.setattr(sys, 'argv',
                        argv + (['--variant', option] if option else []))
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(osp.join(REPO, CONVERTER), run_name='__main__')
    line = str(exit.value.code)
    assert line.startswith(f'error: {src} ')
    assert said in line
    if option is None:
        assert '\n' not in line
        assert len(line) < 500
    assert os.listdir(tmp_path) == ['crafted.pth']


def test_converted_checkpoint_initialises_a_detection_backbone(
        converted_cotnet50, official_cotnet50):
    """mmdet configs load it through init_cfg Pretrained, prefix backbone."""
    import mmdet.models  # noqa: F401
    _, weights = official_cotnet50
    backbone = MODELS.build(
        dict(
            type='mmdet.CoTNet',
            depth=50,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            init_cfg=dict(
                type='Pretrained',
                checkpoint=converted_cotnet50,
                prefix='backbone.')))
    backbone.init_weights()
    assert torch.equal(backbone.layer4[2].conv2.se[3].bias,
                       2 * weights['layer4.2.conv2.se.3.bias'])  # the EMA
    wrong = MODELS.build(
        dict(
            type='CoTNeXt',
            depth=50,
            init_cfg=dict(
                type='Pretrained',
                checkpoint=converted_cotnet50,
                prefix='backbone.')))
    with pytest.raises(ValueError, match='shape mismatches'):
        wrong.init_weights()


def test_converted_checkpoint_initialises_a_segmentation_backbone(
        converted_cotnet50, official_cotnet50):
    """The UPerNet configs load it through init_cfg Pretrained, prefix
    backbone., strictly (mmseg's model-level ``pretrained`` is off)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG_MODELS
    _, weights = official_cotnet50
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'upernet',
                 'upernet_cotnet50_4xb4-160k_ade20k-512x512.py'))
    cfg.model.backbone.init_cfg.checkpoint = converted_cotnet50
    with DefaultScope.overwrite_default_scope('mmseg'):
        segmentor = SEG_MODELS.build(cfg.model)
        segmentor.init_weights()
        assert torch.equal(segmentor.backbone.layer4[2].conv2.se[3].bias,
                           2 * weights['layer4.2.conv2.se.3.bias'])  # EMA
        cfg.model.backbone.depth = 101
        deeper = SEG_MODELS.build(cfg.model)
        with pytest.raises(ValueError, match='missing keys: layer3.6'):
            deeper.init_weights()


def test_wrong_variant_is_refused_with_the_differences(official_cotnet50,
                                                       tmp_path):
    src, _ = official_cotnet50
    dst = tmp_path / 'out.pth'
    result = run_tool(
        CONVERTER, src, str(dst), '--variant', 'cotnet101', check=False)
    assert result.returncode != 0
    assert 'is not a cotnet101 checkpoint' in result.stderr
    assert 'missing keys: layer3.6.conv1.weight' in result.stderr
    assert not dst.exists()


def test_untrusted_pickles_are_not_loaded(tmp_path):
    src = tmp_path / 'odd.pth'
    torch.save({'state_dict': {}, 'hook': print}, src)
    result = run_tool(CONVERTER, str(src), str(tmp_path / 'out.pth'),
                      check=False)
    assert result.returncode != 0
    assert 'holds objects other than tensors' in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_non_cotnet_checkpoint_is_refused(tmp_path):
    src = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, src)
    result = run_tool(CONVERTER, str(src), str(tmp_path / 'out.pth'),
                      check=False)
    assert result.returncode != 0
    assert 'not an official CoTNet' in result.stderr


def test_inferencer_classifies_an_image(converted_cotnet50, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    image = (np.random.default_rng(0).random((300, 260, 3)) * 255).astype(
        np.uint8)
    cv2.imwrite(str(tmp_path / 'image.png'), image)
    inferencer = ImageClassificationInferencer(
        osp.join(REPO, COTNET50), pretrained=converted_cotnet50,
        device='cpu')
    [result] = inferencer(str(tmp_path / 'image.png'))
    scores = torch.as_tensor(result['pred_scores'])
    assert scores.shape == (1000, )
    assert result['pred_label'] == int(scores.argmax())
    assert scores.sum().item() == pytest.approx(1, abs=1e-4)


def test_a_link_at_the_old_temporary_name_is_not_followed(
        official_cotnet50, tmp_path):
    """The output goes through a fresh, randomly named temporary file: a
    link planted at a predictable name (``DST.tmp``) is not written
    through."""
    src, _ = official_cotnet50
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    dst = tmp_path / 'out.pth'
    os.symlink(victim, str(dst) + '.tmp')
    run_tool(CONVERTER, src, str(dst))
    assert victim.read_text() == 'keep me'
    assert load_local_checkpoint(str(dst))['meta']['variant'] == 'cotnet50'
    assert sorted(os.listdir(tmp_path)) == [
        'out.pth', 'out.pth.tmp', 'victim.txt'
    ]


def test_a_failed_write_leaves_the_old_output_and_no_temporary_file(
        official_cotnet50, tmp_path, monkeypatch):
    src, _ = official_cotnet50
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'an earlier conversion')

    def disk_full(obj, f):
        f.write(b'half a checkpoint')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(torch, 'save', disk_full)
    monkeypatch.setattr(sys, 'argv', [CONVERTER, src, str(dst)])
    with pytest.raises(SystemExit, match=f'error: cannot write {dst}: '):
        runpy.run_path(osp.join(REPO, CONVERTER), run_name='__main__')
    assert dst.read_bytes() == b'an earlier conversion'
    assert os.listdir(tmp_path) == ['out.pth']


def test_truncated_official_checkpoint_is_one_error_line(
        official_cotnet50, tmp_path):
    src, _ = official_cotnet50
    cut = tmp_path / 'cut.pth.tar'
    with open(src, 'rb') as f:
        cut.write_bytes(f.read()[:100_000])
    result = run_tool(CONVERTER, str(cut), str(tmp_path / 'out.pth'),
                      check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[-1]
    ]
    assert result.stderr.startswith(f'error: checkpoint {cut} is not a '
                                    'readable torch.save checkpoint')
    assert not (tmp_path / 'out.pth').exists()
