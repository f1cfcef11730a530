from .checkpoint import load_local_checkpoint, register_checkpoint_loader
from .config import prepare_config

register_checkpoint_loader()

__all__ = [
    'load_local_checkpoint', 'prepare_config', 'register_checkpoint_loader'
]
