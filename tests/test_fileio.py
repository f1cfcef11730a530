"""mmcot.fileio.atomic_write: a file appears whole or not at all."""
import os
import stat

import pytest

from mmcot.fileio import atomic_write


def test_writes_and_replaces(tmp_path):
    path = tmp_path / 'result.json'
    with atomic_write(path, 'w') as f:
        f.write('{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    with atomic_write(str(path)) as f:
        f.write(b'\x00\x01')
    assert path.read_bytes() == b'\x00\x01'
    assert os.listdir(tmp_path) == ['result.json']


@pytest.mark.parametrize('error', [RuntimeError, KeyboardInterrupt])
def test_an_error_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    path = tmp_path / 'table.md'
    path.write_text('old')
    with pytest.raises(error):
        with atomic_write(path, 'w') as f:
            f.write('half of the new')
            raise error('stopped')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['table.md']


def test_a_link_at_the_destination_is_replaced_not_followed(tmp_path):
    target = tmp_path / 'target.txt'
    target.write_text('keep me')
    link = tmp_path / 'out.txt'
    os.symlink(target, link)
    with atomic_write(link, 'w') as f:
        f.write('new')
    assert target.read_text() == 'keep me'
    assert not link.is_symlink() and link.read_text() == 'new'


def test_permissions(tmp_path):
    old_umask = os.umask(0o077)
    try:
        with atomic_write(tmp_path / 'new.bin') as f:
            f.write(b'x')
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(tmp_path / 'new.bin').st_mode) == 0o600
    existing = tmp_path / 'shared.bin'
    existing.write_bytes(b'old')
    os.chmod(existing, 0o644)
    with atomic_write(existing) as f:
        f.write(b'new')
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o644


def test_a_directory_at_the_destination_is_an_error(tmp_path):
    (tmp_path / 'out').mkdir()
    with pytest.raises(IsADirectoryError):
        with atomic_write(tmp_path / 'out') as f:
            f.write(b'x')
    assert os.listdir(tmp_path) == ['out']


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write('x', 'a'):
            pass


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    """A writer given a file name (as MMEngine's result dumpers) fills the
    temporary file, which keeps the destination's extension if asked; it
    replaces the destination only when the block ends without an error."""
    import pickle

    from mmcot.fileio import atomic_path
    out = tmp_path / 'results.pkl'
    with atomic_path(out) as tmp:
        assert tmp.endswith('.tmp') and os.path.dirname(tmp) == str(tmp_path)
    assert out.read_bytes() == b''
    with atomic_path(out, keep_extension=True) as tmp:
        assert tmp.endswith('.tmp.pkl')
        assert os.path.basename(tmp).startswith('.results.pkl.')
        assert out.read_bytes() == b''  # the old file until the block ends
        with open(tmp, 'wb') as f:
            pickle.dump([1, 2], f)
    assert pickle.loads(out.read_bytes()) == [1, 2]
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            with open(tmp, 'wb') as f:
                pickle.dump('half', f)
            raise RuntimeError('the run failed')
    assert pickle.loads(out.read_bytes()) == [1, 2]
    assert os.listdir(tmp_path) == ['results.pkl']


def test_binary_mode_takes_no_encoding(tmp_path):
    with pytest.raises(ValueError, match="'wb' .* takes no encoding"):
        with atomic_write(tmp_path / 'a', 'wb', encoding='latin-1'):
            pass
    assert os.listdir(tmp_path) == []


def test_a_long_name_that_open_takes(tmp_path):
    """The temporary name is cut to fit where the file's own name fits."""
    path = tmp_path / ('n' * 250)
    with atomic_write(path, 'w') as f:
        f.write('x')
    assert path.read_text() == 'x' and os.listdir(tmp_path) == [path.name]


def test_a_missing_folder_is_named_by_the_path(tmp_path):
    path = tmp_path / 'no' / 'a.json'
    with pytest.raises(FileNotFoundError) as error:
        with atomic_write(path, 'w'):
            pass
    assert error.value.filename == str(path)
