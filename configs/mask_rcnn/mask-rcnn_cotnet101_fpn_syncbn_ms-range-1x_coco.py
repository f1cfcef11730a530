_base_ = './mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/cotnet101_mmcot.pth')))

# the official run behind the published numbers sampled the shorter side
# from the range [640, 800] (MIN_SIZE_TRAIN_SAMPLING range), not a choice
train_dataloader = dict(
    dataset=dict(pipeline={{_base_.cot_range_mask_train_pipeline}}))
