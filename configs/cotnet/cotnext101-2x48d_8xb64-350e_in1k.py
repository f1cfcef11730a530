# As cot_experiments/CoTNeXt-101-350epoch: batch 512, lr 0.2, wd 6e-5.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(backbone=dict(type='CoTNeXt', depth=101))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=0.2, weight_decay=6e-5))
auto_scale_lr = dict(base_batch_size=512)
# warm-up from the official absolute lr 1e-4 (warmup_lr), a fraction of
# this lr
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4 / 0.2,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=345,
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=350),
]
