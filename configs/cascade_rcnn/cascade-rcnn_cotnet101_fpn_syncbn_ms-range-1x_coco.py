_base_ = './cascade-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/cotnet101_mmcot.pth')))
