# Mask R-CNN with a CoTNet-50 backbone, the paper's COCO recipe (Tables 7, 8):
# FPN, SyncBN in the backbone, the FPN and the heads, 4conv1fc box head,
# shorter side chosen from 640, 672, ..., 800, 1x schedule (lr 0.02 at 16 images),
# RGB input, backbone initialised from the official ImageNet weights
# converted with tools/model_converters/cotnet_to_mmcot.py. mmdet's ResNeSt
# config gives the detector layout, scales and schedule; what the official
# runs do differently is set here (the README's Recipe table compares them).
_base_ = [
    'mmdet::resnest/mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py',
    '../_base_/models/cotnet50_fpn_syncbn.py'
]

model = dict(
    data_preprocessor={{_base_.cot_data_preprocessor}},
    backbone={{_base_.cot_backbone}},
    neck=dict(norm_cfg={{_base_.cot_norm_cfg}}))

# as the official detectron2 runs: no weight decay on norm layers
# (WEIGHT_DECAY_NORM 0) and a 1000-iteration linear warm-up from 0.001 x lr
# (WARMUP_ITERS, WARMUP_FACTOR); steps after epochs 8 and 11 of 12 stand for
# iterations 60k and 80k of 90k at 16 images
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]

# checkpoints written whole or not at all (mmcot's atomic_local backend)
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
