# As cot_experiments/CoTNet-101-350epoch: batch 448, lr 0.175, wd 6e-5.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(backbone=dict(depth=101))
train_dataloader = dict(batch_size=56)
optim_wrapper = dict(optimizer=dict(lr=0.175, weight_decay=6e-5))
auto_scale_lr = dict(base_batch_size=448)
