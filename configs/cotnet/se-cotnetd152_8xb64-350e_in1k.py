# As cot_experiments/SE-CoTNetD-152_350epoch: batch 512, lr 0.2,
# drop path 0.15, at the model's official resolution (default_cfg cot_s,
# which the official data pipeline reads): trained at 256 px, the test image
# resized to 288 (crop_pct 0.888) before the 256 centre crop; 17.0 GFLOPs,
# the paper's figure for this row.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(
    backbone=dict(type='SECoTNetD', depth=152, drop_path_rate=0.15))
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=512)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=256,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies={{_base_.rand_augment_policies_256}},
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
        scale=288,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# warm-up from the official absolute lr 1e-4 (warmup_lr), a fraction of
# this lr
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4 / 0.2,
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
