import os.path as osp

import torch


def prepare_config(cfg, config_path, launcher='none', work_dir=None,
                   cfg_options=None):
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if launcher != 'none' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    return cfg
