_base_ = './mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py'

model = dict(
    backbone=dict(
        type='CoTNeXt',
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/cotnext101-2x48d_mmcot.pth')))

# the official run behind the published numbers sampled the shorter side
# from the range [640, 800] (MIN_SIZE_TRAIN_SAMPLING range), not a choice
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='RandomResize', scale=[(1333, 640), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
