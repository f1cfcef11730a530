"""Train a model of an mmcot config (classification, detection or
segmentation).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
    bash tools/dist_train.sh CONFIG GPUS [...]

The config's ``default_scope`` (``mmpretrain``, ``mmdet`` or ``mmseg``)
decides which library's registries build the model, datasets and metrics.
"""


from mmcot.cli import ToolArgumentParser
from mmcot.engine import (add_runner_arguments, build_runner,
                          exit_on_file_errors, load_config, parse_runner_args,
                          prepare_config, require_config_keys,
                          resume_checkpoint)


def parse_args():
    parser = ToolArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from this checkpoint, or without a value from the '
        'one last_checkpoint names in the work directory (if it does not '
        'load, the newest intact one)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip the evaluation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size')
    add_runner_arguments(parser)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    cfg = load_config(args.config)
    require_config_keys(cfg, args.config,
                        ('model', 'train_dataloader', 'optim_wrapper'))
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    cfg = prepare_config(cfg, args.config, args.launcher, args.work_dir,
                         args.cfg_options)
    if args.resume == 'auto':
        cfg.load_from = resume_checkpoint(cfg.work_dir)
    build_runner(cfg).train()


if __name__ == '__main__':
    exit_on_file_errors(main)
