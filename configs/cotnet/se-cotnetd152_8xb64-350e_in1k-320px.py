# SE-CoTNetD-152 trained and tested at 320 x 320 (the paper's 84.6 row,
# the official se_cotnetd_152_L, default_cfg cot_l): the test image is
# resized to 352 (crop_pct 0.909) before the centre crop.
_base_ = './se-cotnetd152_8xb64-350e_in1k.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=320,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies={{_base_.rand_augment_policies_320}},
        num_policies=2,
        magnitude_level=15,
        magnitude_std=0.5,
        total_level=15,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=352,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=320),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
