import copy
import re

import pytest
import torch
from mmcv.cnn import fuse_conv_bn
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

import mmcot.models  # noqa: F401
from mmcot.engine import CheckpointError
from mmcot.models import CoTNet, CoTNeXt, SECoTNetD
from mmcot.models.layers import (BlurPool2d, CoTLayer, CoXtLayer,
                                 SplitAttentionConv)
from mmcot.models.utils import StateDictError, load_state_dict_from

from .batch_norms import randomize_batch_norms

SMALL = dict(stage_blocks=(1, 1, 2, 1), out_indices=(0, 1, 2, 3))
FAMILIES = [CoTNet, CoTNeXt, SECoTNetD]


def small(cls, **kwargs):
    return cls(depth=50, **{**SMALL, **kwargs})


@pytest.mark.parametrize('cls', FAMILIES)
def test_out_indices_give_stage_shapes(cls):
    model = small(cls).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16),
                                              (1, 512, 8, 8),
                                              (1, 1024, 4, 4),
                                              (1, 2048, 2, 2)]
    model = small(cls, out_indices=(1, 3)).eval()
    outputs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [512, 2048]


def test_block_types():
    cotnet = CoTNet(50, stage_blocks=(1, 1, 1, 1))
    assert all(
        type(getattr(cotnet, f'layer{i}')[0].conv2) is CoTLayer
        for i in range(1, 5))
    cotnext = CoTNeXt(50, stage_blocks=(1, 1, 1, 1))
    assert [getattr(cotnext, f'layer{i}')[0].conv2.in_channels
            for i in range(1, 5)] == [96, 192, 384, 768]
    assert all(
        isinstance(getattr(cotnext, f'layer{i}')[0].conv2, CoXtLayer)
        for i in range(1, 5))
    se = SECoTNetD(50, stage_blocks=(2, 2, 4, 2))
    kinds = [[type(b.conv2).__name__ for b in getattr(se, f'layer{i}')]
             for i in range(1, 5)]
    split, cot = SplitAttentionConv.__name__, CoTLayer.__name__
    assert kinds == [[split] * 2, [split] * 2, [cot, split, cot, split],
                     [cot] * 2]
    assert se.layer1[0].blur is None
    aa = SECoTNetD(152, stage_blocks=(1, 1, 1, 1))
    assert isinstance(aa.layer1[0].blur, BlurPool2d)
    assert aa.layer1[0].conv2.conv.stride == (1, 1)
    assert aa.layer3[0].conv2.stride == 1


@pytest.mark.parametrize('cls', FAMILIES)
def test_frozen_stages(cls):
    model = small(cls, frozen_stages=2)
    model.train()
    for module in [model.conv1, model.norm1, model.layer1, model.layer2]:
        assert not any(p.requires_grad for p in module.parameters())
    for module in [model.layer1, model.layer2]:
        assert not any(m.training for m in module.modules())
    stem_norms = [
        m for stem in (model.conv1, model.norm1) for m in stem.modules()
        if isinstance(m, _BatchNorm)
    ]
    assert stem_norms and not any(m.training for m in stem_norms)
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert all(m.training for m in model.layer3.modules())


@pytest.mark.parametrize('cls', FAMILIES)
def test_norm_eval(cls):
    model = small(cls, norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms)
    assert model.layer3.training
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('cls,depth', [(CoTNet, 50), (CoTNeXt, 50),
                                       (SECoTNetD, 50), (SECoTNetD, 152)])
def test_fused_conv_bn_gives_the_same_outputs(cls, depth):
    """mmcv's fuse_conv_bn (mmdet's benchmark --fuse-conv-bn) folds each
    eval batch norm into the conv before it, the embed's first conv
    included, which the CoT layer applies as two functional convs."""
    torch.manual_seed(0)
    model = randomize_batch_norms(cls(depth=depth, **SMALL)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))
        outputs = fused(x)
    embeds = [m.embed for m in fused.modules() if isinstance(m, CoTLayer)]
    assert embeds and all(e[0].bias is not None for e in embeds)
    assert all(isinstance(e[1], torch.nn.Identity) for e in embeds)
    for out, exp in zip(outputs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('cls', FAMILIES)
def test_with_cp_same_outputs_and_gradients(cls):
    torch.manual_seed(0)
    plain = small(cls, out_indices=(3, ))
    checkpointed = small(cls, out_indices=(3, ), with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    assert all(block.with_cp for block in checkpointed.layer2)
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, checkpointed):
        model.train()
        out = model(x)[0]
        out.square().mean().backward()
        results.append((out.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for g0, g1 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g0, g1)


def test_zero_init_residual_and_drop_path():
    model = CoTNet(50, stage_blocks=(1, 1, 1, 1), drop_path_rate=0.2)
    model.init_weights()
    assert all(
        getattr(model, f'layer{i}')[0].norm3.weight.abs().sum() == 0
        for i in range(1, 5))
    rates = [getattr(model, f'layer{i}')[0].drop_path for i in range(1, 5)]
    assert rates[0].__class__.__name__ == 'Identity'  # the first block: 0
    assert rates[-1].drop_prob == pytest.approx(0.2)


def test_registered_and_buildable_by_name():
    for name in ('CoTNet', 'CoTNeXt', 'SECoTNetD'):
        model = MODELS.build(
            dict(type=name, depth=50, stage_blocks=(1, 1, 1, 1)))
        assert type(model).__name__ == name
    # through mmpretrain's and mmdet's registries (their configs' scopes)
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    for registry in (DET_MODELS, PRETRAIN_MODELS):
        assert registry.get('CoTNet') is CoTNet


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(depth=34), KeyError, r'invalid depth 34 for CoTNet, expected one '
     r'of \[50, 101\]'),
    (dict(depth=50, stage_blocks=(1, 1, 1)), ValueError, 'stage_blocks'),
    (dict(depth=50, stage_blocks=(1, 0, 1, 1)), ValueError, 'stage_blocks'),
    (dict(depth=50, stage_blocks=(1, 1.5, 1, 1)), ValueError, 'stage_blocks'),
    (dict(depth='50'), KeyError, "invalid depth '50'"),
    (dict(depth=50, out_indices=(4, )), ValueError,
     r'out_indices must be stage indices in \[-4, 3\], got \(4,\)'),
    (dict(depth=50, out_indices=(-5, )), ValueError, 'out_indices'),
    (dict(depth=50, out_indices=()), ValueError, 'out_indices'),
    (dict(depth=50, out_indices=(0, 0)), ValueError, 'distinct stages'),
    (dict(depth=50, out_indices=(3, 0)), ValueError, 'increasing order'),
    (dict(depth=50, out_indices=(1, -3)), ValueError, 'distinct stages'),
    (dict(depth=50, frozen_stages=5), ValueError,
     r'frozen_stages must be an int in \[-1, 4\], got 5'),
    (dict(depth=50, num_stages=5), ValueError, 'num_stages'),
    (dict(depth=50, num_stages=3), ValueError,
     'strides must be 3 positive ints .* got None'),
    (dict(depth=50, strides=(1, 0, 2, 2)), ValueError, 'strides must be 4'),
    (dict(depth=50, dilations=(1, 1, 1)), ValueError, 'dilations must be 4'),
    (dict(depth=50, groups=0), ValueError, 'groups must be a positive'),
    (dict(depth=50, width_per_group=0), ValueError, 'width_per_group'),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CoTNet(**kwargs)


def test_out_indices_count_from_the_last_stage_when_negative():
    model = CoTNet(50, stage_blocks=(1, 1, 1, 1), out_indices=(-3, -1))
    assert model.out_indices == (1, 3)
    shapes = [o.shape for o in model.eval()(torch.rand(1, 3, 64, 64))]
    assert shapes == [(1, 512, 8, 8), (1, 2048, 2, 2)]
    assert CoTNet(50, stage_blocks=(1, 1, 1, 1), out_indices=2).out_indices \
        == (2, )


@pytest.mark.parametrize('kwargs,match', [
    (dict(deep_stem=True), 'own deep stem'),
    (dict(stem_channels=1), 'stem_channels must be an even int'),
    (dict(stem_channels=63), 'stem_channels'),
])
def test_se_cotnetd_bad_stem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SECoTNetD(50, stage_blocks=(1, 1, 1, 1), **kwargs)


@pytest.mark.parametrize('cls, depth, valid', [
    (CoTNeXt, 152, '[50, 101]'),
    (SECoTNetD, 34, '[50, 101, 152]'),
    (SECoTNetD, 18, '[50, 101, 152]'),
])
def test_bad_depth_names_the_valid_ones(cls, depth, valid):
    with pytest.raises(KeyError) as error:
        cls(depth)
    assert str(error.value) == repr(
        f'invalid depth {depth} for {cls.__name__}, expected one of {valid}')


@pytest.mark.parametrize('cls', FAMILIES)
def test_caffe_style_strides_the_first_1x1(cls):
    """mmpretrain's ``style='caffe'``: a strided block strides its first
    1x1 conv instead of its 3x3 layer; shapes and weights as ``pytorch``."""
    pytorch, caffe = (small(cls, style=style).eval()
                      for style in ('pytorch', 'caffe'))
    for model, conv1, conv2 in ((pytorch, (1, 1), 2), (caffe, (2, 2), 1)):
        block = model.layer2[0]
        assert block.conv1.stride == conv1
        assert block.conv2_stride == conv2
    x = torch.randn(1, 3, 64, 64)
    assert [o.shape for o in caffe(x)] == [o.shape for o in pytorch(x)]
    assert {k: v.shape for k, v in caffe.state_dict().items()} == {
        k: v.shape for k, v in pytorch.state_dict().items()}


@pytest.mark.parametrize('cls', FAMILIES)
def test_pretrained_in_an_init_cfg_list_is_strict(cls, tmp_path):
    """``init_cfg=[..., dict(type='Pretrained', ...)]`` refuses a
    checkpoint of another model as the dict form does, and loads a
    matching one exactly."""
    source = small(cls)
    good, bad = tmp_path / 'good.pth', tmp_path / 'bad.pth'
    torch.save({'state_dict': source.state_dict()}, good)
    torch.save({'state_dict': small(cls, stage_blocks=(1, 1, 1, 1))
                .state_dict()}, bad)

    def init_cfg(path):
        return [dict(type='Kaiming', layer='Conv2d'),
                dict(type='Pretrained', checkpoint=str(path))]

    model = small(cls, init_cfg=init_cfg(good))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    model = small(cls, init_cfg=init_cfg(bad))
    with pytest.raises(ValueError, match='missing keys: layer3.1'):
        model.init_weights()


# checkpoints that load (tensors and containers only) but hold no state
# dict: name -> (content, what the message says about it); what is no dict,
# or holds none under 'state_dict', is refused by the loader mmcot registers
# with MMEngine (a CheckpointError), the rest by extract_state_dict
MALFORMED = {
    'list': ([1, 2], 'holds a list, not the dict of a checkpoint'),
    'tensor': (torch.zeros(2), 'holds a Tensor, not the dict of a checkpoint'),
    'int_key': ({1: torch.zeros(1)}, 'has a key of type int, not str'),
    'bytes_key': ({'state_dict': {b'k': torch.zeros(1)}},
                  "has a key of type bytes in 'state_dict', not str"),
    'state_dict_list': ({'state_dict': [1]},
                        'holds a list under "state_dict", not a state dict'),
    'value_not_tensor': ({'state_dict': {'backbone.conv1.weight': 3}},
                         "entry 'backbone.conv1.weight' is not a tensor "
                         "(type int in 'state_dict')"),
    'huge_key': ({'k' * 10**6: [0]}, "entry 'kkkk"),
}


@pytest.mark.parametrize('entry', [
    'load_state_dict_from', 'pretrained_init_cfg', 'check_checkpoint_matches'
])
@pytest.mark.parametrize('name', sorted(MALFORMED))
def test_malformed_checkpoint_is_refused_by_name(name, entry, tmp_path):
    """A StateDictError (a ValueError) that names the file, says what was
    expected and gives type names of what was found, not the content;
    never an AttributeError from inside (tools/test.py's strict check and
    a Pretrained init_cfg, with its prefix, go through the same helper)."""
    content, said = MALFORMED[name]
    path = str(tmp_path / f'{name}.pth')
    torch.save(content, path)
    if entry == 'load_state_dict_from':
        def load():
            load_state_dict_from(path)
    elif entry == 'pretrained_init_cfg':
        load = small(CoTNet,
                     init_cfg=dict(type='Pretrained',
                                   checkpoint=path,
                                   prefix='backbone.')).init_weights
    else:
        from mmcot.engine import check_checkpoint_matches
        model = small(CoTNet)

        def load():
            check_checkpoint_matches(model, path)

    no_dict = name in ('list', 'tensor', 'state_dict_list')
    with pytest.raises(Exception) as error:
        load()
    assert error.type is (CheckpointError if no_dict else StateDictError)
    message = str(error.value)
    assert message.startswith(f'checkpoint {path} ')
    assert said in message
    assert no_dict or ('expected a state dict (a dict of tensors keyed by '
                       "str), bare or under 'state_dict'") in message
    assert len(message) < 500


def test_pretrained_prefix_with_no_keys_is_refused_by_name(tmp_path):
    path = str(tmp_path / 'no_backbone.pth')
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, path)
    with pytest.raises(StateDictError,
                       match=re.escape(f'checkpoint {path} has no keys under '
                                       "the prefix 'backbone.'")):
        load_state_dict_from(path, prefix='backbone')


@pytest.mark.parametrize('prefix', ['', 3])
def test_bad_prefix_is_refused_before_the_file_is_read(prefix):
    with pytest.raises(ValueError, match='prefix must be a non-empty str'):
        load_state_dict_from('/no/such/file.pth', prefix=prefix)


def test_a_key_with_and_without_module_prefix_is_refused(tmp_path):
    """Stripping DDP's ``module.`` would keep one of the two silently."""
    path = str(tmp_path / 'both.pth')
    torch.save({'module.a': torch.zeros(1), 'a': torch.ones(2)}, path)
    with pytest.raises(StateDictError, match="holds 'a' both with and "
                       'without the module. prefix'):
        load_state_dict_from(path)


def test_pretrained_init_cfg_needs_a_checkpoint():
    with pytest.raises(ValueError, match='needs checkpoint=PATH, got None'):
        CoTNet(50, stage_blocks=(1, 1, 1, 1),
               init_cfg=dict(type='Pretrained')).init_weights()


def test_cot_inside_mmdet_resnet():
    """The registered CoT layer replaces the 3x3 convs of mmdet's own
    ResNet through its ``dcn`` option."""
    from mmdet.models.backbones import ResNet as DetResNet
    model = DetResNet(
        depth=50,
        out_indices=(0, 1, 2, 3),
        dcn=dict(type='CoT'),
        stage_with_dcn=(False, False, True, True))
    assert type(model.layer2[0].conv2) is torch.nn.Conv2d
    assert all(isinstance(b.conv2, CoTLayer) for b in model.layer3)
    assert all(isinstance(b.conv2, CoTLayer) for b in model.layer4)
    assert model.layer3[0].conv2.stride == 2
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [(2, 256, 16, 16),
                                              (2, 512, 8, 8),
                                              (2, 1024, 4, 4),
                                              (2, 2048, 2, 2)]
    outs[-1].sum().backward()
    assert model.layer3[0].conv2.key_embed[0].weight.grad is not None
