"""mmcot: Contextual Transformer Networks (CoTNet) for OpenMMLab."""
from .version import __version__

__all__ = ['__version__']
