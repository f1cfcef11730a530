"""Load checkpoint files the way users do and report what happened.

    python -m tests.test_engine.checkpoint_probe [--fork-each] ENTRY \
        WORK_DIR FILE...

For each file, one JSON line before the load (so that a crash names the
file) and one after: the outcome (``loaded`` or the exception's type), the
message, whether MMEngine's ``HistoryBuffer`` statistics registry and
torch's ``weights_only`` allow-list are as they were, and how much the
process's peak memory grew. test_checkpoint_security runs this in a
subprocess, so that a crash or a hijacked interpreter cannot pass for a
refusal. With ``--fork-each`` each file is loaded in a forked copy of the
probe as it was before any load (one interpreter start for many files,
each file still alone), and a copy that dies is reported as
``died (wait status N)``.
"""
import json
import os
import os.path as osp
import resource
import sys

import torch
from mmengine.logging.history_buffer import HistoryBuffer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py')


def _demo_model():
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(Config.fromfile(DEMO).model)


def make_loader(entry: str, work_dir: str):
    """``load(path)`` through one of the ways a checkpoint reaches mmcot's
    loader."""
    if entry == 'load_local_checkpoint':
        from mmcot.engine import load_local_checkpoint
        return load_local_checkpoint
    if entry == 'mmengine_load_checkpoint':
        from mmengine.runner import load_checkpoint
        return lambda path: load_checkpoint(
            torch.nn.Linear(4, 8), path, strict=False)
    if entry == 'runner_resume':
        from tests.test_engine.toy_runner import build_toy_runner

        def resume(path):
            runner = build_toy_runner(work_dir,
                                      custom_hooks=[],
                                      load_from=path,
                                      resume=True)
            runner.load_or_resume()

        return resume
    if entry == 'init_model':
        from mmpretrain.apis import init_model
        return lambda path: init_model(DEMO, path, device='cpu')
    if entry == 'test_tool_check':
        from mmcot.engine import check_checkpoint_matches
        model = _demo_model()
        return lambda path: check_checkpoint_matches(model, path)
    if entry == 'pretrained_init_cfg':
        from mmcot.models import CoTNet

        def pretrained(path):
            backbone = CoTNet(depth=50,
                              stage_blocks=(1, 1, 1, 1),
                              stem_channels=16,
                              base_channels=16,
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=path))
            backbone.init_weights()

        return pretrained
    raise SystemExit(f'error: unknown entry {entry!r}')


def load_and_report(load, path: str) -> None:
    print(json.dumps(dict(file=path, started=True)), flush=True)
    registry = dict(HistoryBuffer._statistics_methods)
    safe_globals = set(torch.serialization.get_safe_globals())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load(path)
        outcome, message = 'loaded', ''
    except Exception as error:
        outcome, message = type(error).__name__, str(error)
    after = HistoryBuffer._statistics_methods
    print(json.dumps(
        dict(file=path,
             outcome=outcome,
             message=message,
             registry_unchanged=after.keys() == registry.keys()
             and all(after[k] is v for k, v in registry.items()),
             safe_globals_unchanged=set(
                 torch.serialization.get_safe_globals()) == safe_globals,
             peak_growth_mib=(resource.getrusage(
                 resource.RUSAGE_SELF).ru_maxrss - peak) / 1024)),
          flush=True)


def load_in_a_fork(load, path: str) -> None:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            load_and_report(load, path)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print(json.dumps(
            dict(file=path,
                 outcome=f'died (wait status {status})',
                 message='')),
              flush=True)


def main():
    args = sys.argv[1:]
    fork_each = args[:1] == ['--fork-each']
    entry, work_dir, *files = args[fork_each:]
    import mmcot  # noqa: F401  (as a user's config or script imports it)
    HistoryBuffer()  # a process that has logged holds the built-ins
    load = make_loader(entry, work_dir)
    for path in files:
        if fork_each:
            load_in_a_fork(load, path)
        else:
            load_and_report(load, path)


if __name__ == '__main__':
    main()
