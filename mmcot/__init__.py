"""mmcot: Contextual Transformer Networks (CoTNet) for OpenMMLab.

Importing it registers mmcot's layers, backbones and heads in
MMEngine's root registries, where mmpretrain's and mmdet's configs find them
(``custom_imports=dict(imports=['mmcot'])``), and its classification
configs in mmpretrain's model hub (``mmpretrain.list_models('cotnet*')``).
"""
from .compat import guard_mmpretrain_multimodal

guard_mmpretrain_multimodal()

from . import engine, models  # noqa: E402,F401
from .model_hub import register_models  # noqa: E402
from .version import __version__  # noqa: E402

register_models()

__all__ = ['__version__']
