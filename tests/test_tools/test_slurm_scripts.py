"""tools/slurm_train.sh and tools/slurm_test.sh hand srun the job a user
asked for (a stand-in srun records its arguments)."""
import os
import stat

import pytest

from ..conftest import run_tool


@pytest.fixture
def fake_srun(tmp_path):
    record = tmp_path / 'srun_args'
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = {'PATH': f'{srun.parent}:{os.environ["PATH"]}', 'GPUS': '16'}
    return env, record


@pytest.mark.parametrize('script, positional, tool', [
    ('tools/slurm_train.sh', ['part', 'job', 'a config.py', 'work dir'],
     'train.py'),
    ('tools/slurm_test.sh', ['part', 'job', 'a config.py', 'a ckpt.pth'],
     'test.py'),
])
def test_srun_gets_the_job(fake_srun, script, positional, tool):
    env, record = fake_srun
    run_tool(script, *positional, '--cfg-options', 'a=1', env=env)
    args = record.read_text().splitlines()
    assert args[:8] == [
        '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16',
        '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1'
    ]
    python, unbuffered, path = args[8:11]
    assert unbuffered == '-u' and path.endswith(f'tools/{tool}')
    assert args[11] == 'a config.py'
    if tool == 'train.py':
        assert args[12:14] == ['--work-dir=work dir', '--launcher=slurm']
    else:
        assert args[12:14] == ['a ckpt.pth', '--launcher=slurm']
    assert args[14:] == ['--cfg-options', 'a=1']


@pytest.mark.parametrize('script, last', [('tools/slurm_train.sh', 'WORK_DIR'),
                                          ('tools/slurm_test.sh',
                                           'CHECKPOINT')])
def test_missing_arguments(fake_srun, script, last):
    env, record = fake_srun
    result = run_tool(script, 'part', 'job', env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'error: expected PARTITION JOB_NAME CONFIG {last} '
        f'[{script.split("_")[1][:-3]}.py options], got 2 argument(s)')
    assert not record.exists()
