from .checkpoint import (check_checkpoint_matches, load_local_checkpoint,
                         register_checkpoint_loader)
from .config import (add_runner_arguments, build_runner, check_data_roots,
                     parse_runner_args, prepare_config)

register_checkpoint_loader()

__all__ = [
    'add_runner_arguments', 'build_runner', 'parse_runner_args',
    'check_checkpoint_matches', 'check_data_roots', 'load_local_checkpoint',
    'prepare_config', 'register_checkpoint_loader'
]
