# Cascade Mask R-CNN, CoTNet-50, on the official schedule to the letter: 90k
# iterations of 16 images, lr x0.1 at 60k and 80k, a checkpoint every 5k,
# one evaluation at the end. The 1x config it inherits runs mmdet's 12
# epochs (about 88k iterations); everything else is the same.
_base_ = './cascade-mask-rcnn_cotnet50_fpn_syncbn_ms-1x_coco.py'

train_cfg = {{_base_.cot_train_cfg_90k}}
param_scheduler = {{_base_.cot_param_scheduler_90k}}
train_dataloader = dict(sampler={{_base_.cot_train_sampler_90k}})
default_hooks = dict(checkpoint={{_base_.cot_checkpoint_90k}})
log_processor = dict(by_epoch=False)
