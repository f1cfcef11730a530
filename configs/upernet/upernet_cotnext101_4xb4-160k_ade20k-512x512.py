_base_ = './upernet_cotnet50_4xb4-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        type='CoTNeXt',
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/cotnext101-2x48d_mmcot.pth')))
