"""``import mmcot`` beside a transformers that mmpretrain 1.2.0's
multimodal models cannot import (transformers 5 dropped names they import
from ``transformers.modeling_utils``): faked by a minimal transformers 5.0.0
package put first on the path of a fresh interpreter."""
import importlib.util
import subprocess
import sys
import textwrap

import pytest

import mmcot.compat
from mmcot.compat import MMPRETRAIN_MULTIMODAL_IMPORTS


def fake_transformers(root, drop=('apply_chunking_to_forward', )):
    """A ``transformers`` 5.0.0 with every name mmpretrain's multimodal
    models import except those in ``drop``; its folder."""
    dist = root / 'transformers-5.0.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n')
    for module, names in MMPRETRAIN_MULTIMODAL_IMPORTS.items():
        folder = root.joinpath(*module.split('.'))
        folder.mkdir(parents=True, exist_ok=True)
        init = folder / '__init__.py'
        kept = [n for n in names if n not in drop]
        body = ''.join(f'class {n}:\n    pass\n' for n in kept)
        init.write_text((init.read_text() if init.exists() else '') + body)
    # mmpretrain registers this auto class with a subclass check
    with open(root / 'transformers' / '__init__.py', 'a') as f:
        f.write('from .models.auto.auto_factory import _BaseAutoModelClass\n'
                'class AutoModelForCausalLM(_BaseAutoModelClass):\n'
                '    pass\n')
    return root


def run_python(code, path):
    return subprocess.run(
        [sys.executable, '-W', 'always', '-c',
         textwrap.dedent(code)],
        env={
            'PYTHONPATH': str(path),
            'PATH': '/usr/bin:/bin'
        },
        capture_output=True,
        text=True,
        timeout=300)


def test_missing_names_are_listed(tmp_path):
    """The names the guard reports are exactly those the fake lacks."""
    result = run_python(
        """
        from mmcot.compat import missing_multimodal_imports
        print(*missing_multimodal_imports())
        """,
        fake_transformers(tmp_path,
                          drop=('apply_chunking_to_forward', 'OPTConfig')))
    assert result.stdout.split() == [
        'transformers.modeling_utils.apply_chunking_to_forward',
        'transformers.models.opt.configuration_opt.OPTConfig'
    ], result.stderr


def test_mmcot_imports_and_builds_beside_it(tmp_path):
    result = run_python(
        """
        import mmcot
        import mmpretrain.models
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import dependency
        model = MODELS.build(dict(type='CoTNet', depth=50,
                                  stage_blocks=(1, 1, 1, 1)))
        print(type(model).__name__, dependency.WITH_MULTIMODAL)
        try:
            MODELS.build(dict(type='BlipCaption'))
        except Exception as e:
            print('blip:', e)
        """, fake_transformers(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'CoTNet False'
    assert lines[1].startswith('blip:')
    assert 'requires extra multi-modal dependencies' in lines[1]
    assert ('transformers.modeling_utils.apply_chunking_to_forward'
            in result.stderr)


@pytest.mark.parametrize('drop', [(), ('BertConfig', ), ('OPTConfig', )])
def test_guard_turns_off_only_what_cannot_import(tmp_path, drop):
    """With every name present mmpretrain keeps its multimodal models
    (the guard alone, loaded by path: the fake cannot run them); a missing
    name anywhere turns them off."""
    result = run_python(
        f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            'compat', {mmcot.compat.__file__!r})
        compat = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(compat)
        compat.guard_mmpretrain_multimodal()
        from mmpretrain.utils import dependency
        print(dependency.WITH_MULTIMODAL)
        """, fake_transformers(tmp_path, drop))
    assert result.stdout.split() == [str(not drop)], result.stderr


def test_nothing_changes_without_transformers():
    """This environment has no transformers: mmpretrain had decided on its
    own that its multimodal models are unavailable."""
    from mmpretrain.utils import dependency
    assert importlib.util.find_spec('transformers') is None
    assert dependency.WITH_MULTIMODAL is False
