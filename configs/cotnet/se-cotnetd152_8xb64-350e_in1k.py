# As cot_experiments/SE-CoTNetD-152_350epoch: batch 512, lr 0.2,
# drop path 0.15, at the model's official resolution (default_cfg cot_s,
# which the official data pipeline reads): trained at 256 px, the test image
# resized to 288 (crop_pct 0.888) before the 256 centre crop; 17.0 GFLOPs,
# the paper's figure for this row.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(
    backbone=dict(type='SECoTNetD', depth=152, drop_path_rate=0.15))
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=512)

train_dataloader = dict(
    batch_size=64, dataset=dict(pipeline={{_base_.train_pipeline_256}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline_256}}))
test_dataloader = val_dataloader
