_base_ = './cotnet50_8xb64_in1k.py'

model = dict(backbone=dict(type='SECoTNetD', depth=152))
