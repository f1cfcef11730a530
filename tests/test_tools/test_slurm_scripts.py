"""tools/slurm_train.sh and tools/slurm_test.sh hand srun the job a user
asked for (a stand-in srun records its arguments)."""
import os
import shutil
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


def test_no_srun_is_one_error_line(tmp_path):
    """Off a Slurm cluster: one line saying so, not a shell trace."""
    for command in ('bash', 'dirname'):  # a PATH with these alone
        (tmp_path / command).symlink_to(shutil.which(command))
    result = run_tool('tools/slurm_train.sh', 'part', 'job', 'a.py', 'work',
                      env={'PATH': str(tmp_path)}, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith('error: srun not found')
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def fake_python(tmp_path):
    """A stand-in PYTHON that records the arguments it is given, and a
    config and a checkpoint to name."""
    record = tmp_path / 'python_args'
    python = tmp_path / 'python'
    python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    for name in ('a config.py', 'a ckpt.pth'):
        (tmp_path / name).write_text('')
    return {'PYTHON': str(python), 'PORT': '29511'}, record


@pytest.mark.parametrize('script, files, tool', [
    ('tools/dist_train.sh', ['a config.py'], 'train.py'),
    ('tools/dist_test.sh', ['a config.py', 'a ckpt.pth'], 'test.py'),
])
def test_torchrun_gets_the_job(fake_python, tmp_path, script, files, tool):
    env, record = fake_python
    files = [str(tmp_path / name) for name in files]
    run_tool(script, *files, '2', '--cfg-options', 'a=1', env=env)
    args = record.read_text().splitlines()
    assert args[:8] == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
        '--master_addr=127.0.0.1', '--nproc_per_node=2',
        '--master_port=29511', args[7]
    ]
    assert args[7].endswith(f'tools/{tool}')
    assert args[8:] == files + ['--launcher', 'pytorch', '--cfg-options',
                                'a=1']


@pytest.mark.parametrize('script, positional, message', [
    ('tools/dist_train.sh', ['{config}'],
     'error: expected CONFIG GPUS [train.py options], got 1 argument(s)'),
    ('tools/dist_test.sh', ['{config}', '{ckpt}'], 'error: expected CONFIG '
     'CHECKPOINT GPUS [test.py options], got 2 argument(s)'),
    ('tools/dist_train.sh', ['{config}', 'two'],
     "error: GPUS must be a positive number of processes, got 'two'"),
    ('tools/dist_test.sh', ['{config}', '{ckpt}', '0'],
     "error: GPUS must be a positive number of processes, got '0'"),
    ('tools/dist_train.sh', ['no.py', '2'], 'error: config no.py does not '
     'exist'),
    ('tools/dist_test.sh', ['{config}', 'no.pth', '2'],
     'error: checkpoint no.pth does not exist'),
])
def test_dist_scripts_refuse_bad_arguments(fake_python, tmp_path, script,
                                           positional, message):
    """Before torchrun starts: else each process would say it, and
    torchrun add its own traceback."""
    env, record = fake_python
    names = dict(config=tmp_path / 'a config.py', ckpt=tmp_path / 'a ckpt.pth')
    result = run_tool(script, *[p.format(**names) for p in positional],
                      env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert not record.exists()
