# As cot_experiments/CoTNeXt-50-350epoch: batch 512, lr 0.2.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(backbone=dict(type='CoTNeXt'))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=512)
