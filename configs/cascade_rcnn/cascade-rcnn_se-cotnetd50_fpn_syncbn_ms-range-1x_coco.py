_base_ = './cascade-rcnn_cotnet50_fpn_syncbn_ms-range-1x_coco.py'

model = dict(
    backbone=dict(
        type='SECoTNetD',
        init_cfg=dict(checkpoint='checkpoints/se-cotnetd50_mmcot.pth')))
