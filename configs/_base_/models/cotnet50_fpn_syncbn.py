# The CoT part of the detection configs: a CoTNet-50 backbone with SyncBN,
# initialised from converted official ImageNet weights, the official RGB
# normalisation, and SyncBN in the FPN. The configs of configs/*rcnn*/
# take these into their mmdet base with `{{_base_.cot_*}}`.
custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

# as the official runs (TEST.PRECISE_BN, 200 iterations of 16 images, at the
# end of training since EVAL_PERIOD is 0): the BatchNorm statistics
# recomputed from 200 training batches per GPU (8 x 2 images) after the
# last epoch, before its checkpoint and evaluation
custom_hooks = [dict(type='RecomputeBNHook', num_iters=200)]

cot_norm_cfg = dict(type='SyncBN', requires_grad=True)
cot_data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
cot_backbone = dict(
    _delete_=True,
    type='CoTNet',
    depth=50,
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,
    norm_cfg=cot_norm_cfg,
    norm_eval=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/cotnet50_mmcot.pth',
        prefix='backbone.'))

# the official runs that sampled the shorter side from the range [640, 800]
# (MIN_SIZE_TRAIN_SAMPLING range) where mmdet's Mask R-CNN bases choose from
# 640:32:800: the train pipeline of their ms-range-1x configs
cot_range_mask_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
         poly2mask=False),
    dict(type='RandomResize', scale=[(1333, 640), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
