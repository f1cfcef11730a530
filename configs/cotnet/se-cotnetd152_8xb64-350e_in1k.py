# As cot_experiments/SE-CoTNetD-152_350epoch: batch 512, lr 0.2,
# drop path 0.15.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(
    backbone=dict(type='SECoTNetD', depth=152, drop_path_rate=0.15))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=512)
