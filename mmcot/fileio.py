"""Writing files whole or not at all."""
import contextlib
import os
import os.path as osp
import stat
import tempfile
from typing import IO, Iterator, Optional, Union


def _umask() -> int:
    """The process umask, read without changing it (Linux), else 0o022."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike],
                keep_extension: bool = False) -> Iterator[str]:
    """The name of a temporary file beside ``path``, for a writer that
    takes a file name; ``path`` becomes that file when the ``with`` block
    ends without an error.

    The temporary file is created exclusively under a random hidden name in
    the destination folder (``tempfile.mkstemp``: no link is followed),
    ending in ``.tmp``, or with ``keep_extension`` in ``.tmp`` and
    ``path``'s extension (for writers that check it; a folder scan for
    that extension then sees it while it exists); when the block ends it
    is synced and renamed over ``path`` (``os.replace``), so readers see
    the old file or the whole new one. On any error, KeyboardInterrupt
    included, it is removed and ``path`` is left as it was. A new file gets
    the permissions the umask allows, a replaced one keeps its own.

    Example:
        >>> with atomic_path('results.pkl', keep_extension=True) as tmp:
        ...     mmengine.dump(results, tmp)
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    try:
        permissions = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        permissions = 0o666 & ~_umask()
    try:  # a name cut to leave room for the random part in 255 bytes
        fd, tmp = tempfile.mkstemp(dir=folder,
                                   prefix=f'.{osp.basename(path)[:180]}.',
                                   suffix='.tmp' + (osp.splitext(path)[1]
                                                    if keep_extension else ''))
    except OSError as error:  # the error names path, not the temporary name
        raise type(error)(error.errno, error.strerror, path) from None
    try:
        os.fchmod(fd, permissions)
        os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike],
                 mode: str = 'wb',
                 encoding: Optional[str] = None) -> Iterator[IO]:
    """Write ``path`` whole or not at all: a file object on the temporary
    file of :func:`atomic_path`, which replaces ``path`` when the ``with``
    block ends without an error (on an error ``path`` is left as it was).

    Args:
        path (str | PathLike): The file to write.
        mode (str): ``'wb'`` (default) or ``'w'``.
        encoding (str, optional): Text encoding for ``mode='w'``
            (default UTF-8).

    Example:
        >>> with atomic_write('result.json', 'w') as f:
        ...     json.dump(result, f)
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == 'wb' and encoding is not None:
        raise ValueError("mode 'wb' (binary) takes no encoding")
    with atomic_path(path) as tmp:
        text_encoding = (encoding or 'utf-8') if mode == 'w' else None
        with open(tmp, mode, encoding=text_encoding) as f:
            yield f
