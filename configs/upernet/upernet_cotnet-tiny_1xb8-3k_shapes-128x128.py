# The embedded segmentation demo: UPerNet on a reduced CoTNet (one block per
# stage, a quarter of the width) with narrow heads, trained from scratch on
# the generated shapes dataset (128 x 128 images, six shapes and the
# background), on a CPU in minutes (AdamW: mmseg's SGD recipe for
# pre-trained backbones learns too slowly from scratch). SyncBN falls back
# to BN in this single-process run.
#   python tools/dataset_converters/make_shapes.py seg data/shapes_seg
#   python tools/train.py configs/upernet/upernet_cotnet-tiny_1xb8-3k_shapes-128x128.py  # noqa: E501
_base_ = './upernet_cotnet50_4xb4-160k_ade20k-512x512.py'

classes = ('background', 'circle', 'triangle', 'square', 'pentagon', 'star',
           'cross')
palette = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
           [0, 130, 200], [245, 130, 48], [145, 30, 180]]
crop_size = (128, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        stage_blocks=(1, 1, 1, 1),
        stem_channels=16,
        base_channels=16,
        init_cfg=None),
    decode_head=dict(
        in_channels=[64, 128, 256, 512],
        channels=64,
        num_classes=len(classes)),
    auxiliary_head=dict(
        in_channels=256, channels=32, num_classes=len(classes)))

data_root = 'data/shapes_seg/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# tools/test.py --tta: each image and its flip at their own size (mmseg's
# ADE20K one resizes to six scales around 2048x512)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='RandomFlip', prob=0., direction='horizontal'),
            dict(type='RandomFlip', prob=1., direction='horizontal')
        ], [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])
]


def _shapes(split, pipeline):
    return dict(
        _delete_=True,
        type='BaseSegDataset',
        data_root=data_root,
        metainfo=dict(classes=classes, palette=palette),
        data_prefix=dict(
            img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
        img_suffix='.png',
        seg_map_suffix='.png',
        pipeline=pipeline)


train_dataloader = dict(
    batch_size=8, num_workers=2, dataset=_shapes('train', train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2, dataset=_shapes('val', test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=3000, val_interval=1000)
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=2e-3,
        betas=(0.9, 0.999),
        weight_decay=0.01))
param_scheduler = [
    dict(
        type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=3000,
        by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=1000, max_keep_ckpts=2))
randomness = dict(seed=0)
