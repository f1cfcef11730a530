# SE-CoTNetD-152 in the paper's default setup (no paper row), at the
# model's own official resolution (default_cfg cot_s): 256 px, the test
# image resized to 288 (crop_pct 0.888) before the centre crop.
_base_ = './cotnet50_8xb64_in1k.py'

model = dict(backbone=dict(type='SECoTNetD', depth=152))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
