# The embedded detection demo: Mask R-CNN on a reduced CoTNet (one block per
# stage, a quarter of the width) and narrow FPN / heads, trained from
# scratch on the generated shapes dataset (COCO format, 128 x 128 images),
# on a CPU in minutes. SyncBN falls back to BN in this single-process run.
#   python tools/dataset_converters/make_shapes.py det data/shapes_coco
#   python tools/train.py configs/mask_rcnn/mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py  # noqa: E501
_base_ = './mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py'

classes = ('circle', 'triangle', 'square', 'pentagon', 'star', 'cross')
width = 64
model = dict(
    backbone=dict(
        stage_blocks=(1, 1, 1, 1),
        stem_channels=16,
        base_channels=16,
        frozen_stages=-1,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(
            in_channels=width,
            conv_out_channels=width,
            fc_out_channels=256,
            num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(
            in_channels=width,
            conv_out_channels=width,
            num_classes=len(classes))),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

data_root = 'data/shapes_coco/'
metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=12, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[9, 11],
        gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(
        interval=4,
        max_keep_ckpts=2,
        backend_args=dict(backend='atomic_local')))
# the recipe's BatchNorm recomputation at the end, on 10 batches (40 images)
custom_hooks = [dict(type='RecomputeBNHook', num_iters=10)]
randomness = dict(seed=0)
