"""Runs that survive being killed: checkpoints written whole or not at all,
and ``--resume`` that falls back to the newest intact checkpoint.

``AtomicLocalBackend`` is MMEngine's local file backend with ``put`` and
``put_text`` going through :func:`mmcot.fileio.atomic_write` (a temporary
file in the same folder, flushed, synced, renamed). Registered as
``atomic_local``, it is what the runner's checkpoints, the best
checkpoints and ``last_checkpoint`` are written with once
:func:`use_atomic_checkpoints` has set the checkpoint hook's
``backend_args``: a kill at any moment leaves each file as it was or whole,
and ``last_checkpoint`` is written after the checkpoint it names.
"""
import glob
import os
import os.path as osp
import re
from typing import Optional, Union

import mmengine
from mmengine.config import Config
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log

from ..fileio import atomic_write
from ..untrusted_text import shorten
from .checkpoint import CheckpointError, load_from_local_safely

ATOMIC_BACKEND = 'atomic_local'
_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


class AtomicLocalBackend(LocalBackend):
    """Local files written whole or not at all (see the module).

    MMEngine's checkpoint hook removes the previous best checkpoint before
    it writes the new one: here that removal waits until a best checkpoint
    is next written whole in the same folder, so a failed or killed write
    leaves the previous one. (Pending removals are the process's: the hook
    and the runner's save each make their own backend.)
    """

    _replaced_best = set()  # absolute paths of best checkpoints to remove

    @staticmethod
    def _is_best_checkpoint(filepath) -> bool:
        name = osp.basename(str(filepath))
        return name.startswith('best_') and name.endswith('.pth')

    def put(self, obj: bytes, filepath: Union[str, 'os.PathLike']) -> None:
        mmengine.mkdir_or_exist(osp.dirname(osp.abspath(filepath)))
        with atomic_write(filepath, 'wb') as f:
            f.write(obj)
        if self._is_best_checkpoint(filepath):
            written = osp.abspath(filepath)
            for old in [
                    p for p in self._replaced_best
                    if osp.dirname(p) == osp.dirname(written)
            ]:
                self._replaced_best.discard(old)
                if old != written and osp.isfile(old):
                    os.remove(old)

    def remove(self, filepath: Union[str, 'os.PathLike']) -> None:
        if self._is_best_checkpoint(filepath) and osp.isfile(filepath):
            self._replaced_best.add(osp.abspath(filepath))
            return
        super().remove(filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, 'os.PathLike'],
                 encoding: str = 'utf-8') -> None:
        mmengine.mkdir_or_exist(osp.dirname(osp.abspath(filepath)))
        with atomic_write(filepath, 'w', encoding=encoding) as f:
            f.write(obj)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def use_atomic_checkpoints(cfg: Config) -> None:
    """Write the checkpoint hook's files with :class:`AtomicLocalBackend`,
    unless the config chose a backend or writes them elsewhere (a URI)."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if not hook or hook.get('backend_args') or hook.get('file_client_args'):
        return
    out_dir = hook.get('out_dir') or cfg.work_dir
    if '://' in str(out_dir):
        return
    hook['backend_args'] = dict(backend=ATOMIC_BACKEND)


def _checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None if it loads."""
    try:
        checkpoint = load_from_local_safely(path)
    except (CheckpointError, OSError, ValueError) as e:  # ValueError: a NUL
        return shorten(str(e), 500)
    if 'state_dict' not in checkpoint:
        return f'{path} holds no state_dict: not a runner checkpoint'
    return None


def resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (auto) should continue from.

    The one ``work_dir/last_checkpoint`` names if it loads; otherwise, with
    a warning naming it and the reason, the newest ``epoch_N.pth`` /
    ``iter_N.pth`` in ``work_dir`` that loads. None when there is nothing
    to resume (no ``last_checkpoint`` and no checkpoint: a new run).

    Raises:
        CheckpointError: checkpoints exist, but none of them loads.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):  # a path, or what a crash left of one
        with open(pointer, 'rb') as f:
            named = f.read(4096).decode('utf-8', 'replace').strip() or None
    if named is not None:
        problem = _checkpoint_problem(named)
        if problem is None:
            return named
        print_log(
            f'{pointer} names {shorten(named)}, which cannot be resumed from '
            f'({problem}); looking for the newest intact checkpoint in '
            f'{work_dir}',
            logger='current',
            level=30)
    candidates = []
    for path in glob.glob(osp.join(glob.escape(work_dir), '*.pth')):
        match = _CHECKPOINT_NAME.match(osp.basename(path))
        if match and osp.abspath(path) != osp.abspath(named or ''):
            candidates.append((int(match.group(2)), path))
    rejected = []
    for _, path in sorted(candidates, reverse=True):
        problem = _checkpoint_problem(path)
        if problem is None:
            if named is not None or rejected:
                skipped = (f' (skipped: {"; ".join(rejected)})'
                           if rejected else '')
                print_log(
                    f'resuming from {path}, the newest intact '
                    f'checkpoint{skipped}',
                    logger='current',
                    level=30)
            return path
        rejected.append(f'{path} ({problem})')
    if named is None and not rejected:
        return None
    tried = ([f'{shorten(named)} (named by {pointer})'] if named else
             []) + rejected
    raise CheckpointError(
        f'--resume: no intact checkpoint in {work_dir} to resume from; '
        f'tried {"; ".join(tried)}. Start a new run without --resume, or '
        'give a checkpoint with --resume PATH')
