"""What tools/train.py and tools/test.py do to a config before the runner."""
import argparse
import atexit
import logging
import os
import os.path as osp
from typing import Callable, Iterable, Iterator, Optional, Tuple

import torch
from mmengine.config import Config

from mmcot.cli import CfgOptionsAction

from .interrupted_runs import use_atomic_checkpoints

DEMO_DATA = {
    'data/shapes_cls': 'python tools/dataset_converters/make_shapes.py cls '
    'data/shapes_cls',
    'data/shapes_coco': 'python tools/dataset_converters/make_shapes.py det '
    'data/shapes_coco',
    'data/shapes_seg': 'python tools/dataset_converters/make_shapes.py seg '
    'data/shapes_seg',
}


def _dataset_roots(dataset: dict, path: str) -> Iterator[Tuple[str, str]]:
    """(config key, data_root) of a dataset and the datasets it wraps."""
    if not isinstance(dataset, dict):
        return
    if dataset.get('data_root'):
        yield f'{path}.data_root', dataset['data_root']
    yield from _dataset_roots(dataset.get('dataset'), f'{path}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or []):
        yield from _dataset_roots(inner, f'{path}.datasets.{i}')


def check_data_roots(cfg: Config, splits: Iterable[str]) -> None:
    """Fail at once, naming the config key, if a dataset folder is missing
    (rather than after the model is built, deep inside a dataset class)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for key, root in _dataset_roots(loader.get('dataset'),
                                        f'{split}_dataloader.dataset'):
            if not isinstance(root, str):
                raise ConfigError(f'{key} must be a folder path, got '
                                  f'{type(root).__name__} {root!r}')
            if osp.isdir(root):
                continue
            demo = DEMO_DATA.get(osp.normpath(root))
            hint = (f'generate it with `{demo}`' if demo else
                    f'point it at your data with --cfg-options {key}=PATH')
            raise FileNotFoundError(
                f'{key} is {root!r}, which is not a folder '
                f'({osp.abspath(root)}): {hint}')


def _dicts(node, path: str) -> Iterator[Tuple[str, dict]]:
    """(config key, dict) of every dict nested in ``node``, itself included."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _dicts(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _dicts(value, f'{path}.{i}')


def check_pretrained_checkpoints(cfg: Config) -> None:
    """Fail at once if a local Pretrained checkpoint is missing (rather than
    after the datasets are loaded), saying how to make it."""
    for key, node in _dicts(cfg.model, 'model'):
        if node.get('type') != 'Pretrained' or not node.get('checkpoint'):
            continue
        key, checkpoint = f'{key}.checkpoint', node['checkpoint']
        if not isinstance(checkpoint, str):
            raise ConfigError(f'{key} must be a file path or URL, got '
                              f'{type(checkpoint).__name__} {checkpoint!r}')
        if '://' in checkpoint or osp.isfile(checkpoint):
            continue
        if osp.isdir(checkpoint):
            raise ConfigError(f'{key} is {checkpoint!r}, a folder: name the '
                              'checkpoint file in it')
        raise FileNotFoundError(
            f'{key} is {checkpoint!r}, which does not exist. Convert the '
            'official ImageNet weights (README: "Official weights") with '
            '`python tools/model_converters/cotnet_to_mmcot.py '
            f'OFFICIAL.pth.tar {checkpoint}`, or train from scratch with '
            f'--cfg-options {key.rsplit(".", 1)[0]}=None')


def _init_cpu_process_group(cfg: Config) -> None:
    """gloo instead of nccl, DDP without a GPU index (``device_ids``), and
    BN instead of SyncBN, which synchronises CUDA tensors only (MMEngine
    itself reverts SyncBN in single-process runs)."""
    import torch.distributed as dist
    from mmengine.logging import print_log
    sync_bns = [n for _, n in _dicts(cfg.model, 'model')
                if n.get('type') == 'SyncBN']
    for norm in sync_bns:
        norm['type'] = 'BN'
    if sync_bns:
        print_log(
            'SyncBN layers replaced by BN: SyncBN needs GPUs and this '
            'distributed run is on CPUs; batch statistics are per process.',
            logger='current',
            level=logging.WARNING)
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
        # torch warns and gloo's threads may abort the exit otherwise
        atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    """At exit: free what still holds the group (the finished runner's DDP
    model lingers in reference cycles until the interpreter's last
    collection), so that destroying it joins gloo's threads now rather than
    during the interpreter's teardown, where a C++ thread destroyed unjoined
    aborts the process ("terminate called without an active exception")."""
    import gc

    import torch.distributed as dist
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def prepare_config(
    cfg: Config,
    config_path: str,
    launcher: str = 'none',
    work_dir: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    splits: Iterable[str] = ('train', 'val')
) -> Config:
    """Apply the command line to ``cfg`` and check its data.

    Sets the launcher and the work dir (command line, else the config's,
    else ``work_dirs/<config name>``), merges ``--cfg-options``, starts a
    gloo process group for a ``pytorch``-launched run on a machine without
    GPUs (MMEngine's own start-up assumes one GPU per process), and checks
    the data roots of the dataloaders of ``splits`` and, for training, the
    model's local Pretrained checkpoints. Checkpoints are written whole or
    not at all (:func:`use_atomic_checkpoints`).
    """
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    use_atomic_checkpoints(cfg)
    if launcher == 'pytorch' and not torch.cuda.is_available():
        _init_cpu_process_group(cfg)
    if not cfg.get('val_cfg'):
        splits = [s for s in splits if s != 'val']
    require_config_keys(cfg, config_path, ['model'] +
                        [f'{split}_dataloader' for split in splits])
    check_data_roots(cfg, splits)
    if 'train' in splits and not cfg.get('resume'):
        check_pretrained_checkpoints(cfg)
    return cfg


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share."""
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override config settings, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


class ConfigError(ValueError):
    """A config that lacks what a tool needs of it."""


def load_config(config_path: str) -> Config:
    """``Config.fromfile``, with :class:`ConfigError` naming the file for a
    config that does not parse or is of a type MMEngine does not read."""
    try:
        return Config.fromfile(config_path)
    except SyntaxError as error:
        raise ConfigError(f'config {config_path}, line {error.lineno}: '
                          f'{error.msg}') from None
    except OSError as error:
        if osp.isfile(config_path):  # MMEngine's OSError for its suffixes
            raise ConfigError(f'config {config_path}: {error}') from None
        raise


def require_config_keys(cfg: Config, config_path: str,
                        keys: Iterable[str]) -> None:
    """Raise :class:`ConfigError` naming the first of ``keys`` that ``cfg``
    (loaded from ``config_path``) does not set."""
    for key in keys:
        if cfg.get(key) is None:
            raise ConfigError(
                f'config {config_path} sets no {key}: give a config of '
                'mmcot, mmpretrain, mmdet or mmseg that does')


def exit_on_file_errors(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; a file the user named that is missing, cannot
    be read or written or loaded (a checkpoint, a config with a syntax
    error or without a model, a data or work folder), or a checkpoint that
    holds no state dict or one that does not fit the model
    (:class:`mmcot.models.utils.StateDictError`), ends it with one
    ``error: ...`` line and exit status 1 instead of a traceback."""
    from mmcot.models.utils import StateDictError

    from .checkpoint import CheckpointError
    try:
        main()
    except (CheckpointError, StateDictError, ConfigError, OSError,
            SyntaxError) as error:
        text = ' '.join(str(error).split())  # one line
        raise SystemExit(f'error: {text}')


def build_runner(cfg: Config):
    """MMEngine's Runner, or the config's ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
