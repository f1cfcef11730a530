# The embedded demo: a reduced CoTNet (one block per stage, a quarter of the
# width) learning the six classes of the generated shapes dataset on a CPU.
#   python tools/dataset_converters/make_shapes.py cls data/shapes_cls
#   python tools/train.py configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='CoTNet',
        depth=50,
        stage_blocks=(1, 1, 1, 1),
        stem_channels=16,
        base_channels=16),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=6,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1, )))

data_preprocessor = dict(
    num_classes=6,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

dataset_type = 'CustomDataset'
data_root = 'data/shapes_cls'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=0.002, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=14, by_epoch=True, begin=1, end=15),
]
train_cfg = dict(by_epoch=True, max_epochs=15, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        interval=5,
        max_keep_ckpts=2,
        save_best='auto',
        backend_args=dict(backend='atomic_local')))
randomness = dict(seed=0)

# mmpretrain's default visualizer without the scope key its mmpretrain::
# base adds: mmpretrain's browse_dataset passes every key to the class
visualizer = dict(
    _delete_=True,
    type='UniversalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')])
