# Mask R-CNN with a CoTNet-50 backbone, the paper's COCO recipe (Tables 7, 8):
# FPN, SyncBN in the backbone, the FPN and the heads, 4conv1fc box head,
# shorter side chosen from 640, 672, ..., 800, 1x schedule (lr 0.02 at 16 images),
# RGB input, backbone initialised from the official ImageNet weights
# converted with tools/model_converters/cotnet_to_mmcot.py. mmdet's ResNeSt
# configs share these hyper-parameters.
_base_ = 'mmdet::resnest/mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py'

custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='CoTNet',
        depth=50,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/cotnet50_mmcot.pth',
            prefix='backbone.')),
    neck=dict(norm_cfg=norm_cfg))
