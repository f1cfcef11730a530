# CoTNet-50, the paper's advanced ImageNet setup (Table 4), as the official
# cot_experiments/CoTNet-50-350epoch: 350 epochs, batch 640 on 8 GPUs,
# SGD (Nesterov) lr 0.25, weight decay 4e-5 (not on norms and biases),
# warm-up 5 epochs from 1e-4, cosine to 1e-5, RandAugment rand-m15-mstd0.5-n2,
# Mixup 0.8 / CutMix 1.0 (switching with probability 0.5), label smoothing
# 0.1, dropout 0.25 before the classifier, drop path 0.1, EMA 0.9999 of the
# weights and BN statistics, and bicubic resizing.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CoTNet', depth=50, drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='DropoutLinearClsHead',
        dropout_rate=0.25,
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))


def _official_rand_augment(crop):
    """The official rand-m15-mstd0.5-n2 (JDAI-CV/CoTNet's own
    datasets/rand_augment.py, not timm's) for a crop of ``crop`` px.

    Each of two ops (drawn from 16 with replacement, each applied with
    probability 0.5) gets a level L ~ N(15, 0.5) clipped to [0, 15], and
    an argument (L / 10) * its level-10 value: ``total_level=15`` with
    each range running from the argument at L=0 to the argument at L=15.
    Translation is in pixels (100 at L=10), Cutout a square of 2 * 4L + 1
    px; the offsets of 1e-9 turn mmpretrain's ceil into the official int.
    """
    eps = 1e-9
    translate = 150 / crop
    return [
        dict(type='AutoContrast'),
        dict(type='Equalize'),
        dict(type='Invert'),
        dict(type='Rotate', magnitude_range=(0, 45)),
        dict(type='Posterize', magnitude_range=(-1 + eps, 5 + eps)),
        dict(type='Solarize', magnitude_range=(-1 + eps, 383 + eps)),
        dict(type='SolarizeAdd', magnitude_range=(0, 165)),
        dict(
            type='ColorTransform',
            magnitude_range=(-0.9, 1.8),
            random_negative_prob=0.),
        dict(
            type='Contrast', magnitude_range=(-0.9, 1.8),
            random_negative_prob=0.),
        dict(
            type='Brightness',
            magnitude_range=(-0.9, 1.8),
            random_negative_prob=0.),
        dict(
            type='Sharpness',
            magnitude_range=(-0.9, 1.8),
            random_negative_prob=0.),
        dict(type='Shear', magnitude_range=(0, 0.45), direction='horizontal'),
        dict(type='Shear', magnitude_range=(0, 0.45), direction='vertical'),
        dict(
            type='Translate',
            magnitude_range=(0, translate),
            direction='horizontal'),
        dict(
            type='Translate',
            magnitude_range=(0, translate),
            direction='vertical'),
        dict(type='Cutout', magnitude_range=(1, 121)),
    ]


# the policies at the crops of the advanced configs (224, and 256 and 320
# for SE-CoTNetD-152)
# the official fill, RGB (124, 116, 104), in mmpretrain's BGR
bgr_mean = [103.53, 116.28, 123.675]


def _train_pipeline(crop):
    """Random resized crops of ``crop`` px, flip, the official RandAugment."""
    return [
        dict(type='LoadImageFromFile'),
        dict(
            type='RandomResizedCrop',
            scale=crop,
            backend='pillow',
            interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(
            type='RandAugment',
            policies=_official_rand_augment(crop),
            num_policies=2,
            magnitude_level=15,
            magnitude_std=0.5,
            total_level=15,
            hparams=dict(
                pad_val=[round(x) for x in bgr_mean],
                interpolation='bicubic')),
        dict(type='PackInputs'),
    ]


def _test_pipeline(crop, resize):
    """The official evaluation: bicubic resize of the short edge to
    ``resize``, centre crop of ``crop``."""
    return [
        dict(type='LoadImageFromFile'),
        dict(
            type='ResizeEdge',
            scale=resize,
            edge='short',
            backend='pillow',
            interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=crop),
        dict(type='PackInputs'),
    ]


train_pipeline = _train_pipeline(224)
test_pipeline = _test_pipeline(224, 256)
# SE-CoTNetD-152's official resolutions (default_cfg cot_s and cot_l)
train_pipeline_256 = _train_pipeline(256)
test_pipeline_256 = _test_pipeline(256, 288)
train_pipeline_320 = _train_pipeline(320)
test_pipeline_320 = _test_pipeline(320, 352)
train_dataloader = dict(batch_size=80, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.25, momentum=0.9, weight_decay=4e-5, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(
        type='LinearWarmupLR',
        start_lr=1e-4,  # the official warmup_lr, whatever the lr
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=345,
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=350),
]
train_cfg = dict(by_epoch=True, max_epochs=350, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=640)

custom_hooks = [
    dict(
        type='EMAHook',
        momentum=1e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]

# checkpoints written whole or not at all (mmcot's atomic_local backend)
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))

# mmpretrain's default visualizer without the scope key its mmpretrain::
# base adds: mmpretrain's browse_dataset passes every key to the class
visualizer = dict(
    _delete_=True,
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')])
