# The CoT part of the UPerNet configs: a CoTNet-50 backbone with SyncBN,
# initialised from converted official ImageNet weights, in place of mmseg's
# ResNet-50-V1c. The rest is mmseg's UPerNet recipe for its ResNets (nothing
# frozen, BatchNorm in training mode, the auxiliary FCN head on stage 3, the
# same RGB normalisation as the official CoTNet). The configs of
# configs/upernet/ take these into their mmseg base with `{{_base_.cot_*}}`.
custom_imports = dict(imports=['mmcot'], allow_failed_imports=False)

cot_backbone = dict(
    _delete_=True,
    type='CoTNet',
    depth=50,
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/cotnet50_mmcot.pth',
        prefix='backbone.'))
# checkpoints written whole or not at all (mmcot's atomic_local backend)
cot_checkpoint = dict(backend_args=dict(backend='atomic_local'))
