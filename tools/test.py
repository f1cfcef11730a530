"""Evaluate a checkpoint on the test split of an mmcot config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out FILE [--out-item {pred,metrics}]] [--show-dir DIR] [--show]
        [--wait-time S] [--interval N] [--tta] [--amp]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [...]
    GPUS=16 bash tools/slurm_test.sh PARTITION JOB CONFIG CHECKPOINT [...]

The checkpoint must match the config's model key by key and shape by shape
(a checkpoint of another variant is refused with the list of differences).
Classification, detection and segmentation configs take the same options;
the config's ``default_scope`` picks mmpretrain's, mmdet's or mmseg's hooks
and TTA models.
"""
import contextlib

import mmengine
from mmengine.dist import is_main_process

from mmcot.cli import ToolArgumentParser
from mmcot.engine import (add_runner_arguments, build_runner,
                          check_checkpoint_matches, exit_on_file_errors,
                          load_config, parse_runner_args, prepare_config,
                          require_config_keys)
from mmcot.engine.test_time import (check_test_options,
                                    dump_predictions_metric, enable_tta,
                                    enable_visualization)
from mmcot.fileio import atomic_path, atomic_write


def parse_args():
    parser = ToolArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='save the predictions (a .pkl file), or with --out-item '
        'metrics the metrics (.json, .yaml or .pkl); written whole when '
        'the evaluation ends, or not at all')
    parser.add_argument(
        '--out-item',
        choices=['pred', 'metrics'],
        help='what --out saves (default: pred)')
    parser.add_argument(
        '--show-dir',
        help='draw the predictions (for detection beside the ground truth) '
        'on the test images and write them to this folder')
    parser.add_argument(
        '--show', action='store_true', help='show the drawn images')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='seconds each shown image stays open (default: 2)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='draw every N-th test image (default: every one)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s tta_model and '
        'tta_pipeline, or else each image and its horizontal flip, merged '
        'as mmpretrain (average scores) and mmdet (NMS of boxes) do')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision evaluation')
    add_runner_arguments(parser)
    args = parse_runner_args(parser)
    try:
        check_test_options(args.out, args.out_item, args.show)
    except ValueError as error:
        parser.exit(2, f'error: {error}\n')
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config)
    require_config_keys(cfg, args.config,
                        ('model', 'test_dataloader', 'test_cfg'))
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg.fp16 = True
    cfg = prepare_config(cfg, args.config, args.launcher, args.work_dir,
                         args.cfg_options, splits=('test', ))
    try:
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show, args.show_dir,
                                 args.wait_time, args.interval)
        if args.tta:
            enable_tta(cfg)
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    runner = build_runner(cfg)
    check_checkpoint_matches(runner.model, args.checkpoint)
    with contextlib.ExitStack() as predictions:
        if args.out and args.out_item != 'metrics':
            out = args.out
            if is_main_process():  # the rank that writes the predictions
                out = predictions.enter_context(
                    atomic_path(args.out, keep_extension=True))
            runner.test_evaluator.metrics.append(
                dump_predictions_metric(cfg, out))
        metrics = runner.test()
    if is_main_process() and args.out_item == 'metrics':
        file_format = args.out.rsplit('.', 1)[1]
        binary = file_format in ('pkl', 'pickle')
        with atomic_write(args.out, 'wb' if binary else 'w') as f:
            mmengine.dump(metrics, f, file_format=file_format)


if __name__ == '__main__':
    exit_on_file_errors(main)
