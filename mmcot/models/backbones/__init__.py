from .cotnet import CoTBottleneck, CoTNet, CoTNeXt
from .se_cotnetd import SECoTNetD

__all__ = ['CoTBottleneck', 'CoTNet', 'CoTNeXt', 'SECoTNetD']
