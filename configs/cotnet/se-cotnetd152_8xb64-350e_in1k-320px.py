# SE-CoTNetD-152 trained and tested at 320 x 320 (the paper's 84.6 row,
# the official se_cotnetd_152_L, default_cfg cot_l): the test image is
# resized to 352 (crop_pct 0.909) before the centre crop.
_base_ = './se-cotnetd152_8xb64-350e_in1k.py'

train_dataloader = dict(dataset=dict(pipeline={{_base_.train_pipeline_320}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline_320}}))
test_dataloader = val_dataloader
