# As cot_experiments/SE-CoTNetD-50_350epoch: batch 640, lr 0.25.
_base_ = './cotnet50_8xb80-350e_in1k.py'

model = dict(backbone=dict(type='SECoTNetD'))
