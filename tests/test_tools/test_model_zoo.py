"""The model-zoo tables and metafiles agree with the configs."""
import glob
import importlib.util
import json
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcot  # noqa: F401
from mmcot.analysis import model_complexity

from ..conftest import REPO, run_tool


def read(*parts):
    with open(osp.join(REPO, *parts)) as f:
        return f.read()


def section(text, name):
    match = re.search(
        rf'<!-- model-zoo:{name}:begin -->(.*?)<!-- model-zoo:{name}:end -->',
        text, re.S)
    assert match, f'no model-zoo:{name} section'
    return match.group(1)


def table_rows(text):
    """The rows of the first markdown table in ``text``, as dicts."""
    lines = []
    for line in text.splitlines():
        if line.startswith('|'):
            lines.append(line)
        elif lines:
            break
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    return [
        dict(zip(header, (c.strip() for c in line.strip('|').split('|'))))
        for line in lines[2:]
    ]


def paper_configs(folder):
    names = sorted(
        osp.basename(p)
        for p in glob.glob(osp.join(REPO, 'configs', folder, '*.py')))
    return [n for n in names if '_shapes' not in n]


def test_generated_files_are_up_to_date():
    result = run_tool('tools/analysis/model_zoo.py', '--check', check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def load_model_zoo_tool():
    path = osp.join(REPO, 'tools', 'analysis', 'model_zoo.py')
    spec = importlib.util.spec_from_file_location('model_zoo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kept_counts_are_what_the_models_count_now():
    """docs/complexity.json spares ``--check`` counting some 50 models: each
    entry's key is its config's model and size now, and the smallest model
    of each config folder, counted afresh, gives the kept params and
    FLOPs."""
    tool = load_model_zoo_tool()
    with open(osp.join(REPO, tool.COMPLEXITY)) as f:
        kept = json.load(f)
    smallest = {}
    for key, entry in sorted(kept.items(), key=lambda kv: kv[1]['flops']):
        cfg = Config.fromfile(osp.join(REPO, entry['config']))
        assert tool.complexity_key(cfg, entry['shape']) == key, entry
        smallest.setdefault(osp.dirname(entry['config']), (cfg, entry))
    assert sorted(smallest) == [
        'configs/cascade_mask_rcnn', 'configs/cascade_rcnn', 'configs/cotnet',
        'configs/faster_rcnn', 'configs/mask_rcnn', 'configs/upernet'
    ]
    for cfg, entry in smallest.values():
        counted = model_complexity(cfg, tuple(entry['shape']))
        assert (counted['params'], counted['flops']) == (
            entry['params'], entry['flops']), entry['config']


def test_every_classification_config_listed_with_its_params():
    rows = table_rows(section(read('configs', 'cotnet', 'README.md'),
                              'results'))
    listed = {re.search(r'\((.*?)\)', r['Config']).group(1): r for r in rows}
    assert sorted(listed) == paper_configs('cotnet')
    built = {}
    for config, row in listed.items():
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'cotnet', config))
        key = repr(cfg.model.backbone)
        if key not in built:
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                model = MODELS.build(cfg.model)
            built[key] = sum(p.numel() for p in model.parameters())
        assert float(row['Params (M)']) == pytest.approx(
            built[key] / 1e6, abs=0.005), config


@pytest.mark.parametrize(
    'folder',
    ['faster_rcnn', 'cascade_rcnn', 'mask_rcnn', 'cascade_mask_rcnn'])
def test_every_detection_config_listed(folder):
    rows = table_rows(section(read('configs', folder, 'README.md'),
                              'results'))
    listed = sorted(re.search(r'\((.*?)\)', r['Config']).group(1)
                    for r in rows)
    assert listed == paper_configs(folder)
    assert all(float(r['box AP']) > 40 for r in rows)
    # the paper's Tables 7 and 8 hold CoTNet and CoTNeXt; SE-CoTNetD's
    # numbers come from the official detection repository
    assert [r['AP from'] for r in rows] == [
        'official repo' if r['Backbone'].startswith('SE-') else 'paper'
        for r in rows
    ]


def test_metafiles_and_model_index():
    index = yaml.safe_load(read('model-index.yml'))
    folders = sorted(
        osp.basename(osp.dirname(p))
        for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py')))
    assert sorted(osp.dirname(p).split('/')[-1]
                  for p in index['Import']) == sorted(set(folders))
    for metafile in index['Import']:
        data = yaml.safe_load(read(metafile))
        folder = osp.basename(osp.dirname(metafile))
        names = [m['Name'] + '.py' for m in data['Models']]
        assert sorted(names) == paper_configs(folder)
        for model in data['Models']:
            assert osp.isfile(osp.join(REPO, model['Config']))
            assert model['In Collection'] == data['Collections'][0]['Name']


def test_readme_summary_lists_every_backbone():
    rows = table_rows(section(read('README.md'), 'summary'))
    assert [r['Backbone'] for r in rows] == [
        'CoTNet-50', 'CoTNeXt-50', 'SE-CoTNetD-50', 'CoTNet-101',
        'CoTNeXt-101', 'SE-CoTNetD-101', 'SE-CoTNetD-152'
    ]
    assert osp.isfile(
        osp.join(REPO, 'docs', 'benchmarks', 'throughput_vs_top1.png'))


def test_speed_tables_say_whether_freed_memory_was_kept():
    """A run timed without page faults says so in its table's title; one
    with glibc's defaults (or from before the setup recorded it) does
    not."""
    model_zoo = load_model_zoo_tool()
    run = json.loads(read('docs', 'benchmarks', 'cpu_fp32.json'))
    run['file'] = 'cpu_fp32.json'
    note = 'malloc keeping freed memory'
    for reused, said in ((True, True), (False, False), (None, False)):
        run['setup'].pop('freed_memory_reused', None)
        if reused is not None:
            run['setup']['freed_memory_reused'] = reused
        assert (note in model_zoo.throughput_title(run)) is said
