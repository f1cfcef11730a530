"""What mmcot's tools share for a user's mistakes (mmcot.cli, the config
checks of mmcot.engine): one ``error: ...`` line and a non-zero exit."""
import os
import re

import pytest
import torch

from mmcot.cli import (CfgOptionsAction, ToolArgumentParser, check_device,
                       check_output_file)
from mmcot.engine import (ConfigError, check_data_roots, exit_on_file_errors,
                          load_config, require_config_keys)
from mmcot.engine.config import check_pretrained_checkpoints

from ..conftest import REPO, run_tool
from .conftest import DEMO, demo_options


def parse(args, capsys, **options):
    parser = ToolArgumentParser(prog='tool')
    parser.add_argument('--n', type=int)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    with pytest.raises(SystemExit) as end:
        parser.parse_args(args)
    return end.value.code, capsys.readouterr().err


def test_parser_errors_are_one_line(capsys):
    code, err = parse(['--n', 'x'], capsys)
    assert code == 2
    assert err == "error: argument --n: invalid int value: 'x' (see --help)\n"
    code, err = parse(['--m'], capsys)
    assert (code, err) == (2, 'error: unrecognized arguments: --m '
                           '(see --help)\n')


def test_cfg_options_need_key_value_pairs(capsys):
    code, err = parse(['--cfg-options', 'a=1', 'train_cfg.max_epochs'],
                      capsys)
    assert code == 2
    assert err == ("error: argument --cfg-options: expected KEY=VALUE pairs, "
                   "got 'train_cfg.max_epochs' (see --help)\n")
    parser = ToolArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    args = parser.parse_args(['--cfg-options', 'a=1', 'b.c=[1,2]'])
    assert args.cfg_options == {'a': 1, 'b.c': [1, 2]}


def check_file(path, capsys):
    parser = ToolArgumentParser(prog='tool')
    with pytest.raises(SystemExit) as end:
        check_output_file(parser, str(path), '--json')
    assert end.value.code == 2
    return capsys.readouterr().err


def test_output_file_is_checked_before_the_work(tmp_path, capsys,
                                                monkeypatch):
    assert check_file(tmp_path, capsys) == (
        f'error: --json {tmp_path} is a folder, not a file name '
        '(see --help)\n')
    missing = tmp_path / 'no' / 'r.json'
    assert check_file(missing, capsys) == (
        f'error: --json {missing}: the folder {missing.parent} does not '
        'exist (see --help)\n')
    parser = ToolArgumentParser()
    check_output_file(parser, str(tmp_path / 'r.json'), '--json')  # fine
    check_output_file(parser, None, '--json')
    # a folder the user may not write to (root may write anywhere here)
    monkeypatch.setattr(os, 'access', lambda path, mode: False)
    assert 'is not writable' in check_file(tmp_path / 'r.json', capsys)


@pytest.mark.parametrize('device, message', [
    ('gpu', "--device 'gpu': expected cpu, cuda or cuda:N"),
    ('meta', '--device meta: only cpu and cuda are measured'),
] + ([] if torch.cuda.is_available() else
     [('cuda:0', '--device cuda:0: no GPU is visible')]))
def test_device_is_checked(device, message, capsys):
    parser = ToolArgumentParser(prog='tool')
    with pytest.raises(SystemExit):
        check_device(parser, device)
    assert capsys.readouterr().err == f'error: {message} (see --help)\n'
    check_device(parser, 'cpu')


@pytest.mark.parametrize('error, line', [
    (OSError('a\nb  c'), 'error: a b c'),
    (NotADirectoryError(20, 'Not a directory'),
     'error: [Errno 20] Not a directory'),
    (ConfigError('config x sets no model'), 'error: config x sets no model'),
    (SyntaxError('invalid syntax'), 'error: invalid syntax'),
])
def test_file_errors_end_the_tool_with_one_line(error, line):

    def main():
        raise error

    with pytest.raises(SystemExit) as end:
        exit_on_file_errors(main)
    assert end.value.code == line


def test_other_errors_are_not_hidden():

    def main():
        raise ValueError('a bug')

    with pytest.raises(ValueError, match='a bug'):
        exit_on_file_errors(main)


def test_load_config_names_the_file(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('model = dict(\n')
    with pytest.raises(ConfigError,
                       match=f'config {bad}, line 1: .* never closed'):
        load_config(str(bad))
    text = tmp_path / 'notes.txt'
    text.write_text('model = 1\n')
    with pytest.raises(ConfigError, match=f'config {text}: Only py'):
        load_config(str(text))
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / 'missing.py'))
    empty = tmp_path / 'empty.py'
    empty.write_text('')
    with pytest.raises(ConfigError, match=f'config {empty} sets no model'):
        require_config_keys(load_config(str(empty)), str(empty), ['model'])


@pytest.mark.parametrize('args, code, message', [
    (['tools/train.py', '{empty}'], 1, 'error: config {empty} sets no model'),
    (['tools/train.py', '{bad}'], 1, 'error: config {bad}, line 1:'),
    (['tools/train.py', DEMO, '--cfg-options', 'train_cfg.max_epochs'], 2,
     "error: argument --cfg-options: expected KEY=VALUE pairs, got "
     "'train_cfg.max_epochs'"),
    (['tools/test.py', DEMO, 'x.pth', '--show-dir', '{empty}', '{data}'], 1,
     'error: --show-dir {empty} is a file, not a folder'),
    (['tools/analysis/get_flops.py', DEMO, '--json', '{tmp}/no/f.json'], 2,
     'error: --json {tmp}/no/f.json: the folder {tmp}/no does not exist'),
])
def test_tools_answer_mistakes_with_one_line(args, code, message, tmp_path,
                                             shapes_cls):
    (tmp_path / 'empty.py').write_text('')
    (tmp_path / 'bad.py').write_text('model = dict(\n')
    names = dict(empty=tmp_path / 'empty.py', bad=tmp_path / 'bad.py',
                 tmp=tmp_path, data='{data}')
    args = [a.format(**names) for a in args]
    if '{data}' in args:  # the demo's data, which CI has not generated
        at = args.index('{data}')
        args[at:at + 1] = demo_options(shapes_cls)
    result = run_tool(*args, check=False)
    assert result.returncode == code
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1 and errors[0].startswith(message.format(**names))
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('config, kind, root', [
    (DEMO, 'cls', 'data/shapes_cls'),
    ('configs/mask_rcnn/mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py',
     'det', 'data/shapes_coco'),
    ('configs/upernet/upernet_cotnet-tiny_1xb8-3k_shapes-128x128.py', 'seg',
     'data/shapes_seg'),
])
def test_missing_demo_data_says_how_to_make_it(config, kind, root, tmp_path,
                                               monkeypatch):
    cfg = load_config(os.path.join(REPO, config))
    monkeypatch.chdir(tmp_path)  # where no data/ folder is
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg, ['train'])
    assert str(error.value).endswith(
        'generate it with `python tools/dataset_converters/make_shapes.py '
        f'{kind} {root}`')
    cfg.train_dataloader.dataset.data_root = 3
    with pytest.raises(ConfigError, match='must be a folder path, got int'):
        check_data_roots(cfg, ['train'])


@pytest.mark.parametrize('checkpoint, error, message', [
    ('{tmp}', ConfigError, 'is {tmp!r}, a folder: name the checkpoint file'),
    ('{tmp}/missing.pth', FileNotFoundError, 'which does not exist'),
    (5, ConfigError, 'must be a file path or URL, got int 5'),
])
def test_pretrained_checkpoint_is_checked_at_once(checkpoint, error, message,
                                                  tmp_path):
    cfg = load_config(os.path.join(REPO, DEMO))
    if isinstance(checkpoint, str):
        checkpoint = checkpoint.format(tmp=tmp_path)
    cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                       checkpoint=checkpoint)
    with pytest.raises(error, match=re.escape(message.format(
            tmp=str(tmp_path)))):
        check_pretrained_checkpoints(cfg)
