_base_ = './upernet_cotnet50_4xb2-80k_cityscapes-512x1024.py'

model = dict(
    backbone=dict(
        type='CoTNeXt',
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/cotnext101-2x48d_mmcot.pth')))
