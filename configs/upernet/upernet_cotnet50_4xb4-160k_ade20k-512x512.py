# UPerNet with a CoTNet-50 backbone on ADE20K: mmseg's UPerNet recipe for
# ResNet-50 (512x512 crops, 160k iterations of 4 GPUs x 4 images, SyncBN,
# the auxiliary FCN head), the backbone initialised from the official
# ImageNet weights converted with tools/model_converters/cotnet_to_mmcot.py.
_base_ = [
    'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
    '../_base_/models/cotnet50_upernet_syncbn.py'
]

model = dict(pretrained=None, backbone={{_base_.cot_backbone}})

default_hooks = dict(checkpoint={{_base_.cot_checkpoint}})
