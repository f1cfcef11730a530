_base_ = './mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py'

model = dict(
    backbone=dict(
        type='CoTNeXt',
        init_cfg=dict(checkpoint='checkpoints/cotnext50-2x48d_mmcot.pth')))
