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

# The official runs' solver (SOLVER): no weight decay on norm layers
# (WEIGHT_DECAY_NORM 0), a linear warm-up from 0.001 x lr over 1000
# iterations (WARMUP_FACTOR, WARMUP_ITERS; mmengine's LinearLR reaches the
# full lr at end - 1, detectron2's at 1000), lr x0.1 at 60k and 80k of 90k
# iterations of 16 images (STEPS, MAX_ITER), one evaluation at the end
# (EVAL_PERIOD 0), a checkpoint every 5k iterations (CHECKPOINT_PERIOD).
# The 1x configs run mmdet's 12 epochs instead (about 88k iterations, steps
# after epochs 8 and 11), the -90k configs the iterations.
cot_optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
cot_warmup = dict(
    type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1001)
cot_param_scheduler = [
    cot_warmup,
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
cot_param_scheduler_90k = [
    cot_warmup,
    dict(
        type='MultiStepLR',
        begin=0,
        end=90000,
        by_epoch=False,
        milestones=[60000, 80000],
        gamma=0.1),
]
cot_train_cfg_90k = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=90000,
    val_interval=90000)
cot_train_sampler_90k = dict(type='InfiniteSampler', shuffle=True)
# checkpoints written whole or not at all (mmcot's atomic_local backend)
cot_checkpoint = dict(backend_args=dict(backend='atomic_local'))
cot_checkpoint_90k = dict(cot_checkpoint, by_epoch=False, interval=5000)
