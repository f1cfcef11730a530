"""Packaging: the sdist holds everything a build needs, and mmpretrain's
model hub lists mmcot's classification configs only."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile

import yaml

from .conftest import REPO


def metafile_models(family):
    with open(osp.join(REPO, 'configs', family, 'metafile.yml')) as f:
        return {m['Name'].lower() for m in yaml.safe_load(f)['Models']}


def test_model_hub_lists_classification_configs_only():
    import mmpretrain

    import mmcot  # noqa: F401
    listed = set(mmpretrain.list_models())
    assert metafile_models('cotnet') <= listed
    for family in ('faster_rcnn', 'cascade_rcnn', 'mask_rcnn',
                   'cascade_mask_rcnn', 'upernet'):
        assert not metafile_models(family) & listed, family


def test_registering_the_models_again_changes_nothing():
    """A second import of mmcot's hook (importlib.reload) finds the names
    registered and leaves them, where mmpretrain would raise."""
    import mmpretrain

    from mmcot.model_hub import register_models
    listed = mmpretrain.list_models()
    register_models()
    assert mmpretrain.list_models() == listed


def tracked_files():
    return subprocess.run(['git', 'ls-files'],
                          cwd=REPO,
                          check=True,
                          capture_output=True,
                          text=True).stdout.split()


def test_sdist_holds_every_source_and_requirement_file(tmp_path):
    """Built from a copy of the tracked files (setup.py writes mmcot/.mim),
    without the extension (MANIFEST.in alone must carry the kernels)."""
    source = tmp_path / 'src'
    files = tracked_files()
    for name in files:
        os.makedirs(source / osp.dirname(name), exist_ok=True)
        shutil.copy(osp.join(REPO, name), source / name)
    subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d',
                    str(tmp_path / 'dist')],
                   cwd=source,
                   env=dict(os.environ, MMCOT_WITH_OPS='0'),
                   check=True,
                   capture_output=True)
    [archive] = glob.glob(str(tmp_path / 'dist' / 'mmcot-*.tar.gz'))
    with tarfile.open(archive) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    needed = [
        n for n in files
        if n.startswith(('mmcot/', 'requirements/', 'configs/', 'tools/'))
        or n in ('LICENSE', 'MANIFEST.in', 'README.md', 'setup.py',
                 'setup.cfg', 'model-index.yml')
    ]
    assert any(n.endswith('.cuh') for n in needed)
    missing = sorted(set(needed) - names)
    assert not missing, missing


def test_wheel_holds_mmcot_with_its_mim_files_only(tmp_path):
    """A wheel installs the ``mmcot`` package alone (no top-level ``tests``
    beside it in site-packages) with the configs, tools and model index
    mim reads from ``mmcot/.mim``."""
    import zipfile
    source = tmp_path / 'src'
    files = tracked_files()
    for name in files:
        os.makedirs(source / osp.dirname(name), exist_ok=True)
        shutil.copy(osp.join(REPO, name), source / name)
    subprocess.run([sys.executable, 'setup.py', '-q', 'bdist_wheel', '-d',
                    str(tmp_path / 'dist')],
                   cwd=source,
                   env=dict(os.environ, MMCOT_WITH_OPS='0'),
                   check=True,
                   capture_output=True)
    [wheel] = glob.glob(str(tmp_path / 'dist' / 'mmcot-*.whl'))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {n.split('/')[0] for n in names} == {
        'mmcot', next(n.split('/')[0] for n in names
                      if '.dist-info/' in n)
    }
    mim_files = {n[len('mmcot/.mim/'):] for n in names
                 if n.startswith('mmcot/.mim/')}
    expected = {
        n for n in files
        if n.startswith('configs/') and n.endswith(('.py', '.yml'))
        or n.startswith('tools/') and n.endswith(('.py', '.sh'))
    } | {'model-index.yml'}
    assert not expected - mim_files, sorted(expected - mim_files)
