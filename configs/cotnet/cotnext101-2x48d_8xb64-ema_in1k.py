# The paper's default setup with an exponential moving average (decay
# 0.9999) of the weights and of the BN statistics, as the official
# ModelEmaV2 averages the whole state dict; the paper's rows marked *.
_base_ = './cotnext101-2x48d_8xb64_in1k.py'

custom_hooks = [
    dict(
        type='EMAHook',
        momentum=1e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]
