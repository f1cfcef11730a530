# As cot_experiments/CoTNeXt-101-350epoch: batch 512, lr 0.2, wd 6e-5.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(backbone=dict(type='CoTNeXt', depth=101))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=0.2, weight_decay=6e-5))
auto_scale_lr = dict(base_batch_size=512)
