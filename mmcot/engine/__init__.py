from .checkpoint import (check_checkpoint_matches, load_local_checkpoint,
                         register_checkpoint_loader)
from .config import check_data_roots, prepare_config

register_checkpoint_loader()

__all__ = [
    'check_checkpoint_matches', 'check_data_roots', 'load_local_checkpoint',
    'prepare_config', 'register_checkpoint_loader'
]
