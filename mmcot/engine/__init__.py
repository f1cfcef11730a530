from .checkpoint import (CheckpointError, check_checkpoint_matches,
                         load_from_local_safely, load_local_checkpoint,
                         register_checkpoint_loader)
from .config import (ConfigError, add_runner_arguments, build_runner,
                     check_data_roots, exit_on_file_errors, load_config,
                     parse_runner_args, prepare_config, require_config_keys)
from .interrupted_runs import (AtomicLocalBackend, resume_checkpoint,
                               use_atomic_checkpoints)
from .precise_bn import RecomputeBNHook, recompute_bn_stats
from .schedulers import LinearWarmupLR

register_checkpoint_loader()

__all__ = [
    'AtomicLocalBackend', 'CheckpointError', 'ConfigError', 'LinearWarmupLR',
    'RecomputeBNHook', 'add_runner_arguments', 'build_runner',
    'check_checkpoint_matches', 'check_data_roots', 'exit_on_file_errors',
    'load_config', 'load_from_local_safely', 'load_local_checkpoint',
    'parse_runner_args', 'prepare_config', 'recompute_bn_stats',
    'register_checkpoint_loader', 'require_config_keys', 'resume_checkpoint',
    'use_atomic_checkpoints'
]
