# CoTNet-50, the paper's default ImageNet setup (Table 3): batch 512 on
# 8 GPUs, SGD momentum 0.9, lr 0.1 x 512 / 256 with a 5-epoch linear warm-up
# from ~0, cosine to 100 epochs, label smoothing 0.1, random resized crop
# 224 and flip.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='CoTNet', depth=50),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1),
        topk=(1, 5)))

# the test resize of the official evaluator (the models' default_cfg:
# bicubic, PIL, crop_pct 0.875); training as the paper's Table 3 states
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.2))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=95, by_epoch=True, begin=5, end=100),
]
auto_scale_lr = dict(base_batch_size=512)

# checkpoints written whole or not at all (mmcot's atomic_local backend)
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))

# mmpretrain's default visualizer without the scope key its mmpretrain::
# base adds: mmpretrain's browse_dataset passes every key to the class
visualizer = dict(
    _delete_=True,
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')])
