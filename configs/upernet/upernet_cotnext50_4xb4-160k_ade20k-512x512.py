_base_ = './upernet_cotnet50_4xb4-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        type='CoTNeXt',
        init_cfg=dict(checkpoint='checkpoints/cotnext50-2x48d_mmcot.pth')))
