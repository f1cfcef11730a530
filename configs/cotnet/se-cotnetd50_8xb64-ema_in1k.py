# The paper's default setup with an exponential moving average of the
# weights (decay 0.9999), its rows marked *.
_base_ = './se-cotnetd50_8xb64_in1k.py'

custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
