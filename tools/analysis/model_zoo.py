"""Regenerate mmcot's model-zoo tables, metafiles and plot.

    python tools/analysis/model_zoo.py          # write them
    python tools/analysis/model_zoo.py --check  # exit 1 if any is stale
    python tools/analysis/model_zoo.py --remeasure  # count every model again

Sources: the configs (params and FLOPs are measured here, on the model each
config builds, the local aggregation counted; the counts are kept in
docs/complexity.json by model config and image size, and only a model not
there is counted again), the benchmark measurements in
docs/benchmarks/*.json (tools/analysis/benchmark.py), and the paper's
accuracies (cited per row). Writes:

* the tables between ``<!-- model-zoo:... -->`` markers of README.md,
  configs/cotnet/README.md and the detection and segmentation folders'
  README.md;
* ``metafile.yml`` of each config folder and ``model-index.yml``;
* docs/complexity.json (the counts);
* docs/benchmarks/throughput_vs_top1.png (throughput against top-1).
"""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import sys
from collections import OrderedDict

import yaml
from mmengine.config import Config

from mmcot.analysis import (DETECTION_SHAPE, SEGMENTATION_SHAPE,
                            default_input_shape, format_range, markdown_table,
                            model_complexity)
from mmcot.cli import ToolArgumentParser
from mmcot.fileio import atomic_write
from mmcot.version import __version__

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = 'https://arxiv.org/abs/2107.12292'
PAPER_CITE = 'Li et al., CoTNet, arXiv:2107.12292'
OFFICIAL = 'https://github.com/JDAI-CV/CoTNet'
OFFICIAL_DET = ('https://github.com/JDAI-CV/'
                'CoTNet-ObjectDetection-InstanceSegmentation')
DRIVE = 'https://drive.google.com/file/d/{}/view?usp=sharing'

# name, config token, official variant, top-1 (paper Table 3 default,
# Table 3 default + EMA, Table 4 advanced), official advanced-setup weights
BACKBONES = [
    ('CoTNet-50', 'cotnet50', 'cotnet50', 79.2, 79.8, 81.3,
     '1SR5ezIu7LN943zHaUh4mC0ehxBVMqtfv'),
    ('CoTNeXt-50', 'cotnext50-2x48d', 'cotnext50_2x48d', 79.5, 80.2, 82.1,
     '1j6b5D3xcZ5L_bHiQV0WfqyOieqZLVOCv'),
    ('SE-CoTNetD-50', 'se-cotnetd50', 'se_cotnetd_50', 79.8, 80.5, 81.6,
     '1D2b5fr3lxpBpiFcCYBKngmmSgfVHt_56'),
    ('CoTNet-101', 'cotnet101', 'cotnet101', 80.0, 80.9, 82.8,
     '11jExbPEg4Eq5PApisZyE5k-1CbRYnsQb'),
    ('CoTNeXt-101', 'cotnext101-2x48d', 'cotnext101_2x48d', 80.3, 81.3, 83.2,
     '1des5wgkBDUscQAs8IYOmKCKKUA46QLfJ'),
    ('SE-CoTNetD-101', 'se-cotnetd101', 'se_cotnetd_101', 80.5, 81.4, 83.2,
     '1PWIltQYpYZiDrpfZORRQzGzQeXVd2b2f'),
    ('SE-CoTNetD-152', 'se-cotnetd152', 'se_cotnetd_152', None, None, 84.0,
     '1MkMx0a8an3ikt6LZwClIOyabBnMfR91v'),
]
SE_COTNETD_152_320 = (84.6, '1E43T2jS37gR07p_FVWnjJNkMWeYMXgX9')
# Baselines of the throughput plot: top-1 and where it comes from
BASELINE_TOP1 = {
    'ResNet-50': (76.55, 'mmpretrain resnet50_8xb32_in1k'),
    'ResNeXt-50 (32x4d)': (77.90, 'mmpretrain resnext50-32x4d_8xb32_in1k'),
    'ResNeSt-50': (81.13, 'Zhang et al., ResNeSt, arXiv:2004.08955'),
}

# COCO, paper Tables 7 and 8 (CoTNet, CoTNeXt) and the official detection
# repository's README (SE-CoTNetD): box AP, mask AP
DETECTION = {
    'faster_rcnn': ('Faster R-CNN', {
        'cotnet50': (43.50, None), 'cotnext50': (44.06, None),
        'cotnet101': (45.35, None), 'cotnext101': (46.10, None),
        'se-cotnetd50': (43.96, None), 'se-cotnetd101': (45.66, None)}),
    'cascade_rcnn': ('Cascade R-CNN', {
        'cotnet50': (46.11, None), 'cotnext50': (46.79, None),
        'cotnet101': (48.19, None), 'cotnext101': (49.02, None),
        'se-cotnetd50': (46.77, None), 'se-cotnetd101': (49.02, None)}),
    'mask_rcnn': ('Mask R-CNN', {
        'cotnet50': (44.06, 39.28), 'cotnext50': (44.47, 39.62),
        'cotnet101': (46.17, 40.86), 'cotnext101': (46.66, 41.21),
        'se-cotnetd50': (44.16, 39.38), 'se-cotnetd101': (46.67, 41.53)}),
    'cascade_mask_rcnn': ('Cascade Mask R-CNN', {
        'cotnet50': (46.94, 40.25), 'cotnext50': (47.63, 40.76),
        'cotnet101': (48.97, 41.98), 'cotnext101': (49.35, 42.20),
        'se-cotnetd50': (47.44, 40.73), 'se-cotnetd101': (49.24, 42.38)}),
}
DET_BACKBONE = {
    'cotnet50': 'CoTNet-50', 'cotnext50': 'CoTNeXt-50',
    'se-cotnetd50': 'SE-CoTNetD-50', 'cotnet101': 'CoTNet-101',
    'cotnext101': 'CoTNeXt-101', 'se-cotnetd101': 'SE-CoTNetD-101'
}


def rel(*parts):
    return osp.join(ROOT, *parts)


def training_techniques(cfg: Config) -> list:
    """The techniques of a config's training, in metafile vocabulary."""
    optimizer = cfg.optim_wrapper.optimizer
    techniques = [{
        'SGD': 'SGD with Momentum', 'AdamW': 'AdamW'
    }.get(optimizer.type, optimizer.type)]
    if optimizer.get('nesterov'):
        techniques.append('Nesterov Momentum')
    if optimizer.get('weight_decay'):
        techniques.append('Weight Decay')
    schedulers = [s.type for s in cfg.get('param_scheduler') or []]
    if schedulers[:1] in (['LinearLR'], ['LinearWarmupLR']):
        techniques.append('Warm-up')
    if 'CosineAnnealingLR' in schedulers:
        techniques.append('Cosine Annealing')
    if 'MultiStepLR' in schedulers:
        techniques.append('Step Decay')
    if 'PolyLR' in schedulers:
        techniques.append('Poly Decay')
    head = cfg.model.get('head') or {}
    if (head.get('loss') or {}).get('type') == 'LabelSmoothLoss':
        techniques.append('Label Smoothing')
    augments = (cfg.model.get('train_cfg') or {}).get('augments') or []
    techniques += [
        a['type'] for a in augments if a['type'] in ('Mixup', 'CutMix')
    ]
    pipeline = cfg.train_dataloader.dataset.get('pipeline', [])
    techniques += [
        t for t in ('RandAugment', 'RandomErasing')
        if any(step.get('type') == t for step in pipeline)
    ]
    if any(step.get('type') in ('RandomResize', 'RandomChoiceResize')
           for step in pipeline):
        techniques.append('Multi-Scale Training')
    if 'SyncBN' in json.dumps(cfg.model.to_dict()):
        techniques.append('SyncBN')
    if any(h.get('type') == 'EMAHook'
           for h in cfg.get('custom_hooks') or []):
        techniques.append('EMA')
    return techniques


def training_metadata(cfg: Config) -> OrderedDict:
    """Epochs (or iterations), batch size, techniques and GPUs of a
    config's recipe (the total batch is ``auto_scale_lr.base_batch_size``,
    or for mmseg's configs, which have none, the GPUs of its name's
    ``{gpus}xb{batch}`` times its batch)."""
    if 'auto_scale_lr' in cfg:
        total = cfg.auto_scale_lr.base_batch_size
        gpus = total // cfg.train_dataloader.batch_size
    else:
        gpus = int(re.search(r'_(\d+)xb\d+', cfg.filename).group(1))
        total = gpus * cfg.train_dataloader.batch_size
    length = (('Iterations', cfg.train_cfg.max_iters) if 'max_iters'
              in cfg.train_cfg else ('Epochs', cfg.train_cfg.max_epochs))
    return OrderedDict([
        ('Training Techniques', training_techniques(cfg)),
        ('Training Resources', f'{gpus}x GPUs'),
        length,
        ('Batch Size', total),
    ])


def schedule_name(cfg: Config) -> str:
    """The name mmdet and mmseg give a config's schedule: 1x for 12 epochs,
    the thousands of iterations of an iteration-based one (90k, 160k)."""
    if 'max_iters' in cfg.train_cfg:
        return f'{cfg.train_cfg.max_iters // 1000}k'
    return f'{cfg.train_cfg.max_epochs // 12}x'


#: params and FLOPs measured on the configs' models, kept between runs
COMPLEXITY = 'docs/complexity.json'


def complexity_key(cfg: Config, shape: tuple) -> str:
    """What a count depends on: the model's config and the image size."""
    model = json.dumps(cfg.model.to_dict(), sort_keys=True)
    return hashlib.sha256(f'{model} {tuple(shape)}'.encode()).hexdigest()


class Complexity:
    """Params and FLOPs per model and image size.

    Counting a detector at 1280x800 takes seconds, the 50 configs minutes,
    so counts are kept in docs/complexity.json under :func:`complexity_key`:
    a config whose model or size changed misses and is measured again.
    ``used`` holds what this run asked for, to be written back.
    """

    def __init__(self, known: dict = None):
        self.known = known or {}
        self.used = {}

    def __call__(self, cfg: Config, shape: tuple, name: str) -> dict:
        """``shape``: (H, W) of the counted image; ``name``: the config's
        path, kept beside the counts for readers of the file."""
        key = complexity_key(cfg, shape)
        if key not in self.used:
            counts = self.known.get(key)
            if counts is None:
                result = model_complexity(cfg, shape)
                counts = dict(
                    params=result['params'], flops=result['flops'])
            self.used[key] = dict(
                config=name, shape=list(shape), params=counts['params'],
                flops=counts['flops'])
        return self.used[key]

    @classmethod
    def from_file(cls, path: str) -> 'Complexity':
        if not osp.isfile(path):
            return cls()
        with open(path) as f:
            return cls(json.load(f))

    def dumps(self) -> str:
        """One line per count, by config."""
        entries = sorted(self.used.items(),
                         key=lambda kv: (kv[1]['config'], kv[1]['shape']))
        return '{\n' + ',\n'.join(
            f' {json.dumps(key)}: {json.dumps(counts, sort_keys=True)}'
            for key, counts in entries) + '\n}\n'


def classification_rows(complexity: Complexity) -> list:
    rows = []
    for name, token, variant, default, ema, advanced, drive in BACKBONES:
        setups = [('_8xb64_in1k.py', 'default (Table 3)', default),
                  ('_8xb64-ema_in1k.py', 'default + EMA (Table 3)', ema)]
        advanced_configs = sorted(
            (osp.basename(p) for p in glob.glob(
                rel('configs', 'cotnet', f'{token}_8xb*-350e_in1k*.py'))),
            key=lambda name: (name.endswith('px.py'), name))
        for config in advanced_configs:
            top1, weights = ((SE_COTNETD_152_320[0], SE_COTNETD_152_320[1])
                             if config.endswith('320px.py') else
                             (advanced, drive))
            setups.append((config[len(token):], 'advanced (Table 4)', top1,
                           weights))
        for setup in setups:
            config = token + setup[0]
            path = osp.join('configs', 'cotnet', config)
            if not osp.isfile(rel(path)):
                raise FileNotFoundError(f'{path} is missing')
            cfg = Config.fromfile(rel(path))
            size = default_input_shape(cfg)[0]
            measured = complexity(cfg, default_input_shape(cfg), path)
            rows.append(
                dict(
                    name=name,
                    variant=variant,
                    config=path,
                    setup=setup[1],
                    size=size,
                    params=measured['params'],
                    flops=measured['flops'],
                    top1=setup[2],
                    training=training_metadata(cfg),
                    weights=DRIVE.format(setup[3]) if len(setup) > 3 else
                    None))
    return rows


def load_benchmarks() -> list:
    runs = []
    for path in sorted(glob.glob(rel('docs', 'benchmarks', '*.json'))):
        with open(path) as f:
            run = json.load(f)
        # a tools/gpu_check.sh summary holds benchmark.py's run inside
        run = run.get('model_benchmark', run)
        if not run or 'rows' not in run:
            continue
        run['file'] = osp.relpath(path, ROOT)
        runs.append(run)
    return runs


def deployment_tables() -> str:
    """The eager / torch.compile / onnxruntime runs of
    tools/analysis/benchmark_deploy.py in docs/benchmarks."""
    text = []
    for path in sorted(glob.glob(rel('docs', 'benchmarks', '*.json'))):
        with open(path) as f:
            run = json.load(f)
        if 'deployment' not in run:
            continue
        s = run['setup']
        text += [
            f'Measured ({osp.relpath(path, ROOT)}, '
            '`tools/analysis/benchmark_deploy.py`): '
            f'{s["device"]}, torch {s["torch"]}, fp32, '
            f'{s["shape"]}x{s["shape"]}, median of {s["repeats"]}'
            f'{freed_memory_note(s)}.', '',
            markdown_table([
                OrderedDict([
                    ('Model', r['model']),
                    ('Runtime', r['runtime']),
                    (f'img/s (batch {s["batch"]})', f'{r["img_per_s"]:.1f}'),
                    ('vs ResNet-50', ratio_cell(r, 'vs_ResNet-50')),
                    ('Latency, batch 1 (ms)', f'{r["latency_ms"]:.1f}'),
                ]) for r in run['deployment']
            ]), ''
        ]
    return '\n'.join(text).strip() or 'Not measured yet.'


def fmt(value, digits=1, unit=''):
    return '-' if value is None else f'{value:.{digits}f}{unit}'


def cotnet_tables(rows: list, benchmarks: list) -> str:
    table = [
        OrderedDict([
            ('Model', r['name']),
            ('Setup', r['setup']),
            ('Size', r['size']),
            ('Params (M)', f'{r["params"] / 1e6:.2f}'),
            ('FLOPs (G)', f'{r["flops"] / 1e9:.2f}'),
            ('Top-1 (paper)', fmt(r['top1'])),
            ('Config',
             f'[config]({osp.relpath(r["config"], "configs/cotnet")})'),
            ('Official weights',
             f'[Google Drive]({r["weights"]})' if r['weights'] else '-'),
        ]) for r in rows
    ]
    text = [
        f'Top-1: ImageNet-1k val, from the paper ({PAPER_CITE}, Tables 3 and '
        '4) until mmcot has its own runs. Params and FLOPs (multiply-adds, '
        'the local aggregation counted) are measured on the model each config '
        'builds (`tools/analysis/get_flops.py`). Official weights are the '
        'advanced-setup checkpoints; convert them with '
        '`tools/model_converters/cotnet_to_mmcot.py`.', '',
        markdown_table(table)
    ]
    for run in benchmarks:
        text += ['', throughput_title(run), '', throughput_table(run)]
    return '\n'.join(text)


def ratio_cell(row: dict, key: str) -> str:
    """A ratio to ResNet-50, with the quartiles of its per-round ratios
    where the run recorded them."""
    quartiles = row.get(f'{key}_iqr')
    cell = f'{row[key]:.2f}'
    return f'{cell} ({format_range(quartiles)})' if quartiles else cell


def freed_memory_note(setup: dict) -> str:
    """What the run's setup says of malloc, for a table's title."""
    if setup.get('freed_memory_reused'):
        return ', malloc keeping freed memory (no page faults)'
    return ''


def throughput_title(run: dict) -> str:
    s = run['setup']
    det = s.get('det_shape')
    return (f'Measured speed ({run["file"]}): {s["device"]}, torch '
            f'{s["torch"]}, inference batch {s["batch"]}, training batch '
            f'{s["train_batch"]}, {s["shape"]}x{s["shape"]}'
            + (f', backbone alone at {det[0]}x{det[1]}, batch 1'
               if det else '') +
            f', median of {s["repeats"]} after {s["warmup"]} warm-up runs'
            + (', the models timed in turns' if s.get('interleaved') else '')
            + freed_memory_note(s)
            + '; "vs ResNet-50": throughput over ResNet-50\'s (in brackets, '
            'where recorded: the quartiles of the ratio per round).')


def throughput_table(run: dict) -> str:
    rows = []
    for r in run['rows']:
        row = OrderedDict([
            ('Model', r['model']),
            ('Precision', r['precision']),
            ('Inference (img/s)', f'{r["infer_img_per_s"]:.1f}'),
            ('vs ResNet-50', ratio_cell(r, 'vs_ResNet-50')),
            ('Train step (ms)', f'{r["train_step_ms"]:.0f}'),
        ])
        if 'train_vs_ResNet-50' in r:
            row['Train vs ResNet-50'] = ratio_cell(r, 'train_vs_ResNet-50')
        row['Train peak memory (MiB)'] = f'{r["train_peak_MiB"]:.0f}'
        if 'det_backbone_ms' in r:
            row['Backbone, detection size (ms)'] = (
                f'{r["det_backbone_ms"]:.0f}')
            row['Backbone vs ResNet-50'] = ratio_cell(r, 'det_vs_ResNet-50')
        rows.append(row)
    return markdown_table(rows)


def readme_zoo(rows: list, benchmarks: list) -> str:
    speeds = {}
    for run in benchmarks:
        for r in run['rows']:
            if r['precision'] == 'fp32':
                speeds.setdefault(r['model'], (r, run['setup']['device']))
    table = []
    for name, token, variant, default, ema, advanced, _ in BACKBONES:
        first = next(r for r in rows if r['name'] == name)
        speed = speeds.get(name)
        table.append(
            OrderedDict([
                ('Backbone', name),
                ('Size', first['size']),
                ('Params (M)', f'{first["params"] / 1e6:.2f}'),
                ('FLOPs (G)', f'{first["flops"] / 1e9:.2f}'),
                ('CPU img/s', f'{speed[0]["infer_img_per_s"]:.1f}'
                 if speed else '-'),
                ('vs ResNet-50', f'{speed[0]["vs_ResNet-50"]:.2f}'
                 if speed else '-'),
                ('Top-1 default / EMA / advanced (paper)',
                 f'{fmt(default)} / {fmt(ema)} / {fmt(advanced)}'),
            ]))
    devices = sorted({s[1] for s in speeds.values()})
    return '\n'.join([
        markdown_table(table), '',
        'Params and FLOPs measured on the built models at the size each '
        'model trains and tests at (SE-CoTNetD-152: 256, its official '
        'resolution); speed at 224 x 224, '
        f'measured on {", ".join(devices) or "-"} '
        '(docs/benchmarks, `tools/analysis/benchmark.py`); top-1 from the '
        f'paper ({PAPER_CITE}). Per-config tables: '
        '[configs/cotnet](configs/cotnet/README.md); detection: '
        '[Faster R-CNN](configs/faster_rcnn/README.md), '
        '[Cascade R-CNN](configs/cascade_rcnn/README.md), '
        '[Mask R-CNN](configs/mask_rcnn/README.md), '
        '[Cascade Mask R-CNN](configs/cascade_mask_rcnn/README.md).', '',
        '![throughput vs top-1](docs/benchmarks/throughput_vs_top1.png)'
    ])


def detection_configs(folder: str, complexity: 'Complexity') -> list:
    title, results = DETECTION[folder]
    rows = []
    for found in sorted(glob.glob(rel('configs', folder, '*_coco.py'))):
        config = osp.basename(found)
        token = config.split('_')[1]
        box, mask = results[token]
        cfg = Config.fromfile(found)
        path = osp.join('configs', folder, config)
        measured = complexity(cfg, DETECTION_SHAPE, path)
        rows.append(
            dict(
                config=path,
                token=token,
                backbone=DET_BACKBONE[token],
                box=box,
                mask=mask,
                title=title,
                params=measured['params'],
                flops=measured['flops'],
                schedule=schedule_name(cfg),
                training=training_metadata(cfg)))
    order = list(DET_BACKBONE)
    return sorted(rows, key=lambda r: order.index(r['token']))


#: mmseg's datasets of the UPerNet configs: config name part, name, crop
SEGMENTATION = OrderedDict([
    ('ade20k-512x512', ('ADE20K', '512x512')),
    ('cityscapes-512x1024', ('Cityscapes', '512x1024')),
])


def segmentation_configs(complexity: 'Complexity') -> list:
    rows = []
    for found in sorted(glob.glob(rel('configs', 'upernet', '*.py'))):
        config = osp.basename(found)
        _, token, _, data = config[:-len('.py')].split('_')
        if data not in SEGMENTATION:
            continue  # the demo
        cfg = Config.fromfile(found)
        path = osp.join('configs', 'upernet', config)
        measured = complexity(cfg, SEGMENTATION_SHAPE, path)
        rows.append(
            dict(
                config=path,
                token=token,
                backbone=DET_BACKBONE[token],
                data=data,
                schedule=schedule_name(cfg),
                params=measured['params'],
                flops=measured['flops'],
                training=training_metadata(cfg)))
    order, datasets = list(DET_BACKBONE), list(SEGMENTATION)
    return sorted(
        rows,
        key=lambda r: (datasets.index(r['data']), order.index(r['token'])))


def segmentation_table(rows: list) -> str:
    table = [
        OrderedDict([
            ('Backbone', r['backbone']),
            ('Dataset', SEGMENTATION[r['data']][0]),
            ('Crop', SEGMENTATION[r['data']][1]),
            ('Schedule', r['schedule']),
            ('Params (M)', f'{r["params"] / 1e6:.2f}'),
            ('FLOPs (G)', f'{r["flops"] / 1e9:.1f}'),
            ('mIoU', '-'),
            ('Config', f'[config]({osp.basename(r["config"])})'),
        ]) for r in rows
    ]
    source = ('No mIoU yet: neither the paper nor the official code trains '
              'CoT backbones for semantic segmentation, and these configs '
              'have not been trained on ADE20K or Cityscapes (that takes '
              'four GPUs for a day or more each). Params of the whole '
              'segmentor (the auxiliary head, which only training uses, '
              'included); FLOPs (multiply-adds) at inference (backbone and '
              'decode head) on a '
              f'{SEGMENTATION_SHAPE[1]}x{SEGMENTATION_SHAPE[0]} image '
              '(`tools/analysis/get_flops.py`).')
    return '\n'.join([source, '', markdown_table(table)])


def segmentation_metafile(rows: list) -> dict:
    models = [
        OrderedDict([
            ('Name', osp.basename(r['config'])[:-len('.py')]),
            ('In Collection', 'UPerNet with CoT backbones'),
            ('Metadata',
             OrderedDict([('FLOPs', int(r['flops'])),
                          ('Parameters', int(r['params'])),
                          ('Training Data', SEGMENTATION[r['data']][0]),
                          ('Crop Size', SEGMENTATION[r['data']][1]),
                          *r['training'].items()])),
            ('Config', r['config']),
        ]) for r in rows
    ]
    return OrderedDict([('Collections', [
        collection('UPerNet with CoT backbones', 'configs/upernet/README.md')
    ]), ('Models', models)])


def detection_table(rows: list) -> str:
    with_mask = rows[0]['mask'] is not None
    table = []
    for r in rows:
        row = OrderedDict([('Backbone', r['backbone']),
                           ('Schedule', r['schedule']),
                           ('Params (M)', f'{r["params"] / 1e6:.2f}'),
                           ('FLOPs (G)', f'{r["flops"] / 1e9:.1f}'),
                           ('box AP', fmt(r['box'], 2))])
        if with_mask:
            row['mask AP'] = fmt(r['mask'], 2)
        row['AP from'] = ('official repo' if r['token'].startswith('se-')
                          else 'paper')
        row['Config'] = f'[config]({osp.basename(r["config"])})'
        table.append(row)
    source = (f'CoTNet / CoTNeXt: the paper ({PAPER_CITE}, Tables 7 and 8); '
              f'SE-CoTNetD: the official detection repository '
              f'({OFFICIAL_DET}). COCO val2017, backbones initialised from '
              'the official ImageNet weights (advanced setup). The '
              'published numbers come from 90k-iteration runs; 1x is '
              "mmdet's 12 epochs (about 88k iterations). Params and "
              'FLOPs (multiply-adds) of the whole detector at inference on a '
              f'{DETECTION_SHAPE[1]}x{DETECTION_SHAPE[0]} (W x H) image: the '
              'box heads on the 1000 proposals the RPN keeps, the mask heads '
              'on 100 detections (`tools/analysis/get_flops.py`).')
    return '\n'.join([source, '', markdown_table(table)])


def classification_metafile(rows: list) -> dict:
    models = []
    for r in rows:
        config = osp.basename(r['config'])[:-len('.py')]
        entry = OrderedDict([
            ('Name', config),
            ('Metadata',
             OrderedDict([('FLOPs', int(r['flops'])),
                          ('Parameters', int(r['params'])),
                          ('Training Data', 'ImageNet-1k'),
                          *r['training'].items()])),
            ('In Collection', 'CoTNet'),
        ])
        if r['top1'] is not None:
            entry['Results'] = [
                OrderedDict([('Task', 'Image Classification'),
                             ('Dataset', 'ImageNet-1k'),
                             ('Metrics',
                              OrderedDict([('Top 1 Accuracy', r['top1'])]))])
            ]
        entry['Config'] = r['config']
        if r['weights']:
            entry['Converted From'] = OrderedDict([('Weights', r['weights']),
                                                   ('Code', OFFICIAL)])
        models.append(entry)
    return OrderedDict([
        ('Collections', [collection('CoTNet', 'configs/cotnet/README.md')]),
        ('Models', models)
    ])


def collection(name: str, readme: str) -> dict:
    """A metafile Collection: the architecture, the paper, the README and
    mmcot's implementation (a path in the package at this version)."""
    return OrderedDict([
        ('Name', name),
        ('Metadata',
         OrderedDict([('Architecture',
                       ['Contextual Transformer', 'Local Aggregation'])])),
        ('Paper',
         OrderedDict([('Title', 'Contextual Transformer Networks for Visual '
                       'Recognition'), ('URL', PAPER)])),
        ('README', readme),
        ('Code',
         OrderedDict([('URL', 'mmcot/models/backbones/cotnet.py'),
                      ('Version', f'v{__version__}')])),
    ])


def detection_metafile(folder: str, rows: list) -> dict:
    models = []
    for r in rows:
        results = [
            OrderedDict([('Task', 'Object Detection'), ('Dataset', 'COCO'),
                         ('Metrics', OrderedDict([('box AP', r['box'])]))])
        ]
        if r['mask'] is not None:
            results.append(
                OrderedDict([('Task', 'Instance Segmentation'),
                             ('Dataset', 'COCO'),
                             ('Metrics', OrderedDict([('mask AP', r['mask'])
                                                      ]))]))
        models.append(
            OrderedDict([
                ('Name', osp.basename(r['config'])[:-len('.py')]),
                ('In Collection', f'{r["title"]} with CoT backbones'),
                ('Metadata',
                 OrderedDict([('FLOPs', int(r['flops'])),
                              ('Parameters', int(r['params'])),
                              ('Training Data', 'COCO'),
                              *r['training'].items()])),
                ('Results', results),
                ('Config', r['config']),
            ]))
    title = DETECTION[folder][0]
    return OrderedDict([('Collections', [
        collection(f'{title} with CoT backbones',
                   f'configs/{folder}/README.md')
    ]), ('Models', models)])


def plot(rows: list, benchmarks: list, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fp32 = [(run, r) for run in benchmarks for r in run['rows']
            if r['precision'] == 'fp32']
    if not fp32:
        return
    run = fp32[0][0]
    speed = {r['model']: r['infer_img_per_s'] for rr, r in fp32 if rr is run}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, index, marker in (('CoT, default setup', 3, 'o'),
                                 ('CoT, advanced setup', 5, 's')):
        points = [(speed[b[0]], b[index], b[0]) for b in BACKBONES
                  if b[0] in speed and b[index] is not None]
        if points:
            xs, ys, names = zip(*points)
            ax.plot(xs, ys, marker, label=label)
    for i, backbone in enumerate(b for b in BACKBONES if b[0] in speed):
        top = backbone[5]  # labelled once, at the advanced-setup point
        ax.annotate(backbone[0], (speed[backbone[0]], top), fontsize=7,
                    textcoords='offset points',
                    xytext=(-10, 6 if i % 2 else -11))
    for name, (top1, source) in BASELINE_TOP1.items():
        if name in speed:
            ax.plot(speed[name], top1, 'k^')
            ax.annotate(name, (speed[name], top1), fontsize=7,
                        textcoords='offset points', xytext=(3, -9))
    ax.plot([], [], 'k^', label='baselines (mmpretrain / ResNeSt paper)')
    ax.set_xlim(min(speed.values()) * 0.85, max(speed.values()) * 1.15)
    ax.set_xlabel(f'inference throughput, images/s ({run["setup"]["device"]}'
                  f', batch {run["setup"]["batch"]}, fp32)')
    ax.set_ylabel('ImageNet top-1 (%, published)')
    ax.set_title('Throughput vs top-1 (cf. the paper\'s Figure 3)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper right')
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)


def replace_section(text: str, name: str, body: str) -> str:
    begin, end = f'<!-- model-zoo:{name}:begin -->', \
        f'<!-- model-zoo:{name}:end -->'
    pattern = re.compile(re.escape(begin) + '.*?' + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f'markers {begin} ... {end} not found')
    return pattern.sub(lambda _: f'{begin}\n{body}\n{end}', text)


def dump_yaml(data) -> str:

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        OrderedDict,
        lambda d, v: d.represent_mapping('tag:yaml.org,2002:map', v.items()))
    return yaml.dump(
        data, Dumper=Dumper, sort_keys=False, width=1000,
        allow_unicode=True)


def generate(remeasure: bool = False) -> dict:
    """{path: new text} of every generated text file; ``remeasure``: count
    every model again rather than take docs/complexity.json's counts."""
    complexity = Complexity() if remeasure else Complexity.from_file(
        rel(COMPLEXITY))
    rows = classification_rows(complexity)
    benchmarks = load_benchmarks()
    files = {}

    def section(path, name, body):
        text = files.get(path) or open(rel(path)).read()
        files[path] = replace_section(text, name, body)

    section('README.md', 'summary', readme_zoo(rows, benchmarks))
    section('README.md', 'deployment', deployment_tables())
    section('configs/cotnet/README.md', 'results',
            cotnet_tables(rows, benchmarks))
    files['configs/cotnet/metafile.yml'] = dump_yaml(
        classification_metafile(rows))
    metafiles = ['configs/cotnet/metafile.yml']
    for folder in DETECTION:
        detection_rows = detection_configs(folder, complexity)
        section(f'configs/{folder}/README.md', 'results',
                detection_table(detection_rows))
        path = f'configs/{folder}/metafile.yml'
        files[path] = dump_yaml(detection_metafile(folder, detection_rows))
        metafiles.append(path)
    segmentation_rows = segmentation_configs(complexity)
    section('configs/upernet/README.md', 'results',
            segmentation_table(segmentation_rows))
    files['configs/upernet/metafile.yml'] = dump_yaml(
        segmentation_metafile(segmentation_rows))
    metafiles.append('configs/upernet/metafile.yml')
    files['model-index.yml'] = dump_yaml(OrderedDict(Import=metafiles))
    files[COMPLEXITY] = complexity.dumps()
    return files, rows, benchmarks


def main():
    parser = ToolArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--check',
        action='store_true',
        help='only compare: exit 1 if a generated file is stale')
    parser.add_argument(
        '--remeasure',
        action='store_true',
        help=f'count every model again, not only those {COMPLEXITY} lacks')
    args = parser.parse_args()
    files, rows, benchmarks = generate(args.remeasure)
    stale = [
        path for path, text in files.items()
        if not osp.isfile(rel(path)) or open(rel(path)).read() != text
    ]
    if args.check:
        if stale:
            print('stale (run tools/analysis/model_zoo.py): ' +
                  ', '.join(stale))
            sys.exit(1)
        print(f'model zoo up to date ({len(files)} files)')
        return
    for path in stale:
        os.makedirs(osp.dirname(rel(path)) or '.', exist_ok=True)
        with atomic_write(rel(path), 'w') as f:
            f.write(files[path])
        print(f'wrote {path}')
    plot(rows, benchmarks, rel('docs', 'benchmarks',
                               'throughput_vs_top1.png'))
    print('wrote docs/benchmarks/throughput_vs_top1.png')


if __name__ == '__main__':
    main()
