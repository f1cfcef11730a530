"""Gather what tools/gpu_check.sh wrote into OUT_DIR/summary.json.

    python tools/analysis/gpu_check_summary.py OUT_DIR

The summary holds the device and versions, each step's status and time,
the op tests' counts, the op and model benchmarks as their scripts wrote
them (``model_benchmark`` is what tools/analysis/model_zoo.py reads from a
file in docs/benchmarks), the training run's losses, and the project's GPU
goals (H100, batch 64) with the measured value against each target: the
op's floor ratios and speed-ups over the previous kernels on the kernels'
device time where benchmark_op.py measured it.
Exits 1 if a step failed or the training loss is not finite and falling.
"""
import json
import math
import os.path as osp
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Optional

import torch

from mmcot.cli import ToolArgumentParser
from mmcot.fileio import atomic_write

#: CoTNet-50's CoT layers per stage (stage shapes as benchmark_op.py's)
COTNET50_BLOCKS = (3, 4, 6, 3)
#: (name, target, larger is better)
GOALS = {
    'op forward floor_ratio, stages 1-3 (max)': (1.3, False),
    'op forward floor_ratio, stage 4': (2.0, False),
    'op backward floor_ratio, stages 1-3 (max)': (1.5, False),
    'op backward floor_ratio, stage 4': (2.0, False),
    'op forward vs reference (min)': (8.0, True),
    'op backward vs reference (min)': (6.0, True),
    'op float32 speed-up over the previous kernels (min)': (1.5, True),
    'op float16 speed-up over the previous kernels (min)': (3.0, True),
    'CoTNet-50 fp16 training img/s vs ResNet-50': (0.75, True),
    'aggregation op share of the CoTNet-50 fp16 training step': (0.05, False),
}


def read_json(path: str) -> Optional[dict]:
    """A step's JSON, or None where the step wrote none or a broken one
    (killed while writing: its status in steps.tsv says why)."""
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        return None


def read_steps(out: str) -> list:
    """The steps of steps.tsv (name, exit status, seconds a line); a line
    cut short by a killed run is left out."""
    steps = []
    with open(osp.join(out, 'steps.tsv')) as f:
        for line in f:
            fields = line.rstrip('\n').split('\t')
            if len(fields) != 3 or not fields[2].isdigit():
                continue
            name, status, seconds = fields
            steps.append(
                dict(name=name, ok=status == '0', seconds=int(seconds)))
    return steps


def read_tests(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    try:
        suite = ET.parse(path).getroot()
    except ET.ParseError:  # cut short by a killed run
        return None
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    counts = {k: int(suite.get(k, 0))
              for k in ('tests', 'failures', 'errors', 'skipped')}
    counts['failed'] = sorted(
        f'{case.get("classname")}::{case.get("name")}'
        for case in suite.iter('testcase')
        if case.find('failure') is not None or case.find('error') is not None)
    return counts


def read_training(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    losses = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a killed run
                continue
            if isinstance(record, dict) and 'loss' in record:
                losses.append(record['loss'])
    if not losses:
        return dict(iterations=0, finite=False, falling=False)
    window = max(1, min(10, len(losses) // 3))
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    finite = all(math.isfinite(x) for x in losses)
    return dict(
        iterations=len(losses),
        first_loss_mean=first,
        last_loss_mean=last,
        finite=finite,
        falling=finite and last < first,
        losses=losses)


def device_info() -> dict:
    info = dict(torch=torch.__version__, cuda=torch.version.cuda)
    if torch.cuda.is_available():
        info.update(
            device=torch.cuda.get_device_name(0),
            capability='.'.join(map(str,
                                    torch.cuda.get_device_capability(0))),
            memory_GiB=torch.cuda.get_device_properties(0).total_memory /
            2**30)
        try:
            info['driver'] = subprocess.run(
                [
                    'nvidia-smi', '--query-gpu=driver_version',
                    '--format=csv,noheader'
                ],
                capture_output=True,
                text=True,
                timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    else:
        info['device'] = f'CPU ({torch.get_num_threads()} threads)'
    return info


def op_rows(op: Optional[dict], dtype: str) -> list:
    return [r for r in (op or {}).get('rows', []) if r['dtype'] == dtype]


def kernel_figure(direction: dict, key: str) -> float:
    """``kernel_<key>`` of a benchmark_op.py direction (the kernels' device
    time, measured on GPUs), else ``key`` (wall time of the call)."""
    return direction.get(f'kernel_{key}', direction[key])


def goals(op: Optional[dict], models: Optional[dict]) -> list:
    """Each GPU goal with its measured value (None where not measured)."""
    measured = dict.fromkeys(GOALS)
    rows = op_rows(op, 'float32') + op_rows(op, 'float16') + op_rows(
        op, 'bfloat16')
    early = [r for r in rows if r['C'] < 512]
    late = [r for r in rows if r['C'] == 512]
    if rows:
        for direction in ('forward', 'backward'):
            measured[f'op {direction} floor_ratio, stages 1-3 (max)'] = max(
                kernel_figure(r[direction], 'floor_ratio') for r in early)
            measured[f'op {direction} floor_ratio, stage 4'] = max(
                kernel_figure(r[direction], 'floor_ratio') for r in late)
            measured[f'op {direction} vs reference (min)'] = min(
                r[direction]['vs_reference'] for r in rows)
    for dtype in ('float32', 'float16'):
        speedups = [
            kernel_figure(r[direction], 'vs_previous')
            for r in op_rows(op, dtype)
            for direction in ('forward', 'backward')
            if 'vs_previous' in r[direction]
        ]
        if speedups:
            measured[f'op {dtype} speed-up over the previous kernels '
                     '(min)'] = min(speedups)
    fp16 = {
        r['model']: r
        for r in (models or {}).get('rows', []) if r['precision'] == 'fp16'
    }
    if 'CoTNet-50' in fp16 and 'ResNet-50' in fp16:
        measured['CoTNet-50 fp16 training img/s vs ResNet-50'] = (
            fp16['ResNet-50']['train_step_ms'] /
            fp16['CoTNet-50']['train_step_ms'])
        op16 = op_rows(op, 'float16')
        if len(op16) == len(COTNET50_BLOCKS):
            op_ms = sum(n * (r['forward']['ms'] + r['backward']['ms'])
                        for n, r in zip(COTNET50_BLOCKS, op16))
            batch_scale = models['setup']['train_batch'] / op16[0]['batch']
            measured['aggregation op share of the CoTNet-50 fp16 training '
                     'step'] = (op_ms * batch_scale /
                                fp16['CoTNet-50']['train_step_ms'])
    return [
        dict(
            goal=name,
            target=target,
            measured=measured[name],
            met=None if measured[name] is None else
            (measured[name] >= target if larger else measured[name] <= target))
        for name, (target, larger) in GOALS.items()
    ]


def main():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='the OUT_DIR of tools/gpu_check.sh')
    parser.add_argument(
        '--loss-may-rise',
        action='store_true',
        help='require a finite training loss only (toy runs)')
    args = parser.parse_args()
    out = args.out
    if not osp.isfile(osp.join(out, 'steps.tsv')):
        raise SystemExit(f'error: {out} has no steps.tsv: not an OUT_DIR '
                         'of tools/gpu_check.sh')
    op = read_json(osp.join(out, 'op_benchmark.json'))
    models = read_json(osp.join(out, 'model_benchmark.json'))
    summary = dict(
        setup=device_info(),
        steps=read_steps(out),
        tests_ops=read_tests(osp.join(out, 'tests_ops.xml')),
        op_benchmark=op,
        model_benchmark=models,
        training=read_training(osp.join(out, 'train_scalars.json')),
    )
    summary['goals'] = goals(op, models)
    with atomic_write(osp.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'[gpu_check] {summary["setup"]["device"]}, torch '
          f'{summary["setup"]["torch"]} (CUDA {summary["setup"]["cuda"]})')
    for s in summary['steps']:
        print(f'  {s["name"]}: {"ok" if s["ok"] else "FAILED"} '
              f'({s["seconds"]} s)')
    training = summary['training'] or {}
    if training.get('iterations'):
        print(f'  training: {training["iterations"]} iterations, loss '
              f'{training["first_loss_mean"]:.3f} -> '
              f'{training["last_loss_mean"]:.3f}')
    for g in summary['goals']:
        value = '-' if g['measured'] is None else f'{g["measured"]:.3f}'
        print(f'  goal {g["goal"]}: {value} (target {g["target"]}) '
              f'{ {True: "met", False: "MISSED", None: ""}[g["met"]]}')
    print(f'  written to {osp.join(out, "summary.json")}')
    failed = not all(s['ok'] for s in summary['steps']) or not (
        training.get('finite') and
        (training.get('falling') or args.loss_may_rise))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
