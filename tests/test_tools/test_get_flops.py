"""tools/analysis/get_flops.py as a user runs it."""
import json

import pytest
from mmengine.config import Config

from mmcot.analysis import model_complexity

from ..conftest import REPO, run_tool
from .conftest import FASTER_DEMO


def test_detection_config_counts_the_whole_detector(tmp_path):
    result = run_tool('tools/analysis/get_flops.py', FASTER_DEMO, '--json',
                      str(tmp_path / 'flops.json'))
    assert ('input: (3, 800, 1280), counted: detector, box heads on '
            in result.stdout)
    with open(tmp_path / 'flops.json') as f:
        written = json.load(f)
    expected = model_complexity(Config.fromfile(f'{REPO}/{FASTER_DEMO}'),
                                (800, 1280))
    assert written['flops'] == expected['flops']
    assert written['params'] == expected['params']
    assert written['shape'] == [800, 1280]


@pytest.mark.parametrize('args, message', [
    (['--shape', '1', '2', '3'], '--shape takes H W or one size'),
    (['--shape', '8'], 'each at least 32'),
])
def test_bad_shape_is_refused(args, message):
    result = run_tool('tools/analysis/get_flops.py', FASTER_DEMO, *args,
                      check=False)
    assert result.returncode == 2 and message in result.stderr


def test_missing_config(tmp_path):
    result = run_tool('tools/analysis/get_flops.py',
                      str(tmp_path / 'nope.py'), check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'error: config {tmp_path / "nope.py"} does not exist')
