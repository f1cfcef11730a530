"""The Python sources keep the house style: flake8 and isort, configured in
setup.cfg as OpenMMLab projects configure them, report nothing."""
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SOURCES = ['mmcot', 'tools', 'tests', 'configs', 'setup.py']


@pytest.mark.parametrize('checker', [
    ['flake8'],
    ['isort', '--check-only', '--diff'],
])
def test_sources_pass(checker):
    pytest.importorskip(checker[0])  # tools/install.sh installs both
    result = subprocess.run([sys.executable, '-m', *checker, *SOURCES],
                            cwd=REPO,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
