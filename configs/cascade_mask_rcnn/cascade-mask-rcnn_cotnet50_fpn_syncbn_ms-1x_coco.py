# Cascade Mask R-CNN with a CoTNet-50 backbone, the paper's COCO recipe (Tables 7, 8):
# FPN, SyncBN in the backbone, the FPN and the heads, 4conv1fc box head,
# shorter side chosen from 640, 672, ..., 800, 1x schedule (lr 0.02 at 16 images),
# RGB input, backbone initialised from the official ImageNet weights
# converted with tools/model_converters/cotnet_to_mmcot.py. mmdet's ResNeSt
# configs share these hyper-parameters.
_base_ = [
    'mmdet::resnest/cascade-mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py',
    '../_base_/models/cotnet50_fpn_syncbn.py'
]

model = dict(
    data_preprocessor={{_base_.cot_data_preprocessor}},
    backbone={{_base_.cot_backbone}},
    neck=dict(norm_cfg={{_base_.cot_norm_cfg}}))

# checkpoints written whole or not at all (mmcot's atomic_local backend)
default_hooks = dict(
    checkpoint=dict(backend_args=dict(backend='atomic_local')))
