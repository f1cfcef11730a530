"""mmcot: Contextual Transformer Networks (CoTNet) for OpenMMLab.

Importing it registers mmcot's layers, backbones, heads and hooks in
MMEngine's root registries, where mmpretrain's and mmdet's configs find them
(``custom_imports=dict(imports=['mmcot'])``).
"""
from . import engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
