from .checkpoint import (CheckpointError, check_checkpoint_matches,
                         load_local_checkpoint, register_checkpoint_loader)
from .config import (add_runner_arguments, build_runner, check_data_roots,
                     exit_on_file_errors, parse_runner_args, prepare_config)
from .interrupted_runs import (AtomicLocalBackend, resume_checkpoint,
                               use_atomic_checkpoints)

register_checkpoint_loader()

__all__ = [
    'AtomicLocalBackend', 'CheckpointError', 'add_runner_arguments',
    'build_runner', 'resume_checkpoint', 'use_atomic_checkpoints',
    'check_checkpoint_matches', 'check_data_roots', 'exit_on_file_errors',
    'load_local_checkpoint', 'parse_runner_args', 'prepare_config',
    'register_checkpoint_loader'
]
