"""Evaluate a checkpoint on the test split of an mmcot config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [...]

The checkpoint must match the config's model key by key and shape by shape
(a checkpoint of another variant is refused with the list of differences).
"""
import argparse

from mmengine.config import Config
from mmengine.evaluator import DumpResults

from mmcot.engine import (add_runner_arguments, build_runner,
                          check_checkpoint_matches, exit_on_file_errors,
                          parse_runner_args, prepare_config)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to this pickle')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision evaluation')
    add_runner_arguments(parser)
    return parse_runner_args(parser)


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg.fp16 = True
    cfg = prepare_config(cfg, args.config, args.launcher, args.work_dir,
                         args.cfg_options, splits=('test', ))
    runner = build_runner(cfg)
    check_checkpoint_matches(runner.model, args.checkpoint)
    if args.out:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    exit_on_file_errors(main)
