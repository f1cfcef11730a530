_base_ = './upernet_cotnet50_4xb4-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        type='SECoTNetD',
        depth=101,
        init_cfg=dict(checkpoint='checkpoints/se-cotnetd101_mmcot.pth')))
