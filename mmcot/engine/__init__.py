from .checkpoint import (CheckpointError, check_checkpoint_matches,
                         load_from_local_safely, load_local_checkpoint,
                         register_checkpoint_loader)
from .config import (add_runner_arguments, build_runner, check_data_roots,
                     exit_on_file_errors, parse_runner_args, prepare_config)
from .interrupted_runs import (AtomicLocalBackend, resume_checkpoint,
                               use_atomic_checkpoints)
from .precise_bn import RecomputeBNHook, recompute_bn_stats
from .schedulers import LinearWarmupLR

register_checkpoint_loader()

__all__ = [
    'AtomicLocalBackend', 'CheckpointError', 'LinearWarmupLR',
    'RecomputeBNHook', 'add_runner_arguments', 'build_runner',
    'check_checkpoint_matches', 'check_data_roots', 'exit_on_file_errors',
    'load_from_local_safely', 'load_local_checkpoint', 'parse_runner_args',
    'prepare_config',
    'recompute_bn_stats', 'register_checkpoint_loader', 'resume_checkpoint',
    'use_atomic_checkpoints'
]
