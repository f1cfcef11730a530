"""A hook that kills its own training process (SIGKILL: no handler, no
clean-up) at a chosen point, for the interrupted-run tests."""
import os
import os.path as osp
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmcot.engine import AtomicLocalBackend
from mmcot.fileio import atomic_write


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillAt(Hook):
    """SIGKILL at ``point`` of epoch ``epoch`` (1-based) on rank ``rank``:
    ``'train_iter'`` after training iteration ``iteration`` (1-based),
    ``'val'`` after the first validation iteration, ``'save'`` half-way
    through writing ``epoch_<epoch>.pth`` (inside the atomic write, as a
    kill during ``torch.save``'s output would)."""

    def __init__(self, point, epoch, iteration=1, rank=0):
        assert point in ('train_iter', 'val', 'save'), point
        self.point, self.epoch, self.iteration = point, epoch, iteration
        self.rank = rank
        if point == 'save' and self._my_rank():
            self._kill_during_save()

    def _my_rank(self):
        return int(os.environ.get('RANK', 0)) == self.rank

    def _kill_during_save(self):
        original = AtomicLocalBackend.put
        name = f'epoch_{self.epoch}.pth'

        def put(backend, obj, filepath):
            if osp.basename(filepath) == name:
                with atomic_write(filepath) as f:
                    f.write(obj[:len(obj) // 2])
                    f.flush()
                    kill()
            return original(backend, obj, filepath)

        AtomicLocalBackend.put = put

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if (self.point == 'train_iter' and self._my_rank()
                and runner.epoch + 1 == self.epoch
                and batch_idx + 1 == self.iteration):
            kill()

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        # validation follows the epoch's end, when runner.epoch counts it
        if (self.point == 'val' and self._my_rank()
                and runner.epoch == self.epoch):
            kill()
