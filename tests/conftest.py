import importlib
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def pytest_configure(config):
    """With MMCOT_REQUIRE_EXT=1 (tools/run_tests.sh sets it, so CI runs
    with it) a missing or broken ``mmcot._ext``, or one without its CUDA
    kernels where a GPU is visible, stops the run instead of letting the
    kernel tests skip and the op fall back to its reference."""
    if os.getenv('MMCOT_REQUIRE_EXT') != '1':
        return
    try:
        ext = importlib.import_module('mmcot._ext')
    except ImportError as error:
        raise pytest.UsageError(
            f'MMCOT_REQUIRE_EXT=1 but mmcot._ext does not load ({error}): '
            'rebuild it with tools/install.sh')
    import torch
    if torch.cuda.is_available() and not ext.with_cuda:
        raise pytest.UsageError(
            'MMCOT_REQUIRE_EXT=1, a GPU is visible, but mmcot._ext has no '
            'CUDA kernels: rebuild it with tools/install.sh')


#: ``mim`` beside this Python (openmim: the verified stack has it; an
#: offline GPU node installed from a wheelhouse does not)
MIM = osp.join(osp.dirname(sys.executable), 'mim')
needs_mim = pytest.mark.skipif(
    not osp.isfile(MIM), reason='openmim is not installed beside this Python')


def free_port() -> str:
    """A TCP port nobody listens on now, for a distributed run's master."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def run_tool(*args, timeout=900, check=True, env=None):
    """Run ``python tools/...`` (or a shell script under tools/) from the
    repository root, as a user would; return the completed process."""
    command = list(args)
    if command[0].endswith('.py'):
        command = [sys.executable] + command
    elif command[0].endswith('.sh'):
        command = ['bash'] + command
    full_env = dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable)
    full_env.update(env or {})
    result = subprocess.run(
        command,
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(args)} failed '
                             f'({result.returncode}):\n{result.stdout[-3000:]}'
                             f'\n{result.stderr[-5000:]}')
    return result


@pytest.fixture(scope='session')
def shapes_cls(tmp_path_factory):
    """A small copy of the classification demo dataset."""
    from mmcot.datasets import make_shapes_classification
    root = str(tmp_path_factory.mktemp('shapes_cls'))
    make_shapes_classification(root, train_per_class=8, val_per_class=4)
    return root


@pytest.fixture(scope='session')
def shapes_coco(tmp_path_factory):
    """A small copy of the detection demo dataset."""
    from mmcot.datasets import make_shapes_detection
    root = str(tmp_path_factory.mktemp('shapes_coco'))
    make_shapes_detection(root, train_images=8, val_images=4)
    return root
