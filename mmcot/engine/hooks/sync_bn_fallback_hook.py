import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SyncBNFallbackHook(Hook):
    """Run SyncBN configs where SyncBN cannot synchronise.

    ``SyncBatchNorm`` synchronises batch statistics over the process group,
    on CUDA tensors only. In a single-process run (one GPU, or a CPU) there
    is nothing to synchronise, and on a CPU a multi-process (gloo) run cannot
    synchronise: there the hook turns every ``SyncBatchNorm`` back into a
    ``BatchNorm2d`` before the run starts, keeping its parameters and
    statistics (the optimizer's parameters stay the same objects), and says
    so in the log. Distributed GPU runs keep SyncBN.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not any(
                isinstance(m, torch.nn.SyncBatchNorm)
                for m in model.modules()):
            return
        distributed = dist.is_available() and dist.is_initialized()
        on_gpu = any(p.is_cuda for p in model.parameters())
        if distributed and on_gpu:
            return
        reason = ('no process group (single-process run)'
                  if not distributed else 'the model is not on a GPU')
        for name, child in list(model.named_children()):
            setattr(model, name, revert_sync_batchnorm(child))
        runner.logger.warning(
            f'SyncBN layers reverted to BatchNorm: {reason}; batch '
            'statistics are per process.')
