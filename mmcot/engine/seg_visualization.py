"""mmseg's visualization hook writing each drawn test image to a folder."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
from mmengine import fileio
from mmseg.engine.hooks import SegVisualizationHook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SegFileVisualizationHook(SegVisualizationHook):
    """mmseg's ``SegVisualizationHook``; in testing, each drawn image (the
    ground truth beside the prediction) is also written to ``out_dir``
    under the image's file name, where mmseg's sends it to the
    visualizer's backends only (``vis_data/vis_image`` of the run).

    Args:
        out_dir (str, optional): Folder for the drawn test images.
            Default: None (mmseg's behaviour).
        **kwargs: As :class:`SegVisualizationHook` (``draw``, ``interval``,
            ``show``, ``wait_time``, ``backend_args``).
    """

    def __init__(self, out_dir: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def _after_iter(self,
                    runner,
                    batch_idx: int,
                    data_batch: dict,
                    outputs: Sequence,
                    mode: str = 'val') -> None:
        if mode != 'test' or self.out_dir is None or not self.draw:
            return super()._after_iter(runner, batch_idx, data_batch,
                                       outputs, mode)
        if not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for output in outputs:
            image = mmcv.imfrombytes(
                fileio.get(output.img_path, backend_args=self.backend_args),
                channel_order='rgb')
            name = osp.basename(output.img_path)
            out_file = osp.join(self.out_dir, name)
            if osp.realpath(out_file) == osp.realpath(output.img_path):
                raise ValueError(
                    f'out_dir {self.out_dir} holds the test image {name}, '
                    'which the drawing would overwrite; give another folder')
            self._visualizer.add_datasample(
                f'test_{name}',
                image,
                data_sample=output,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=runner.iter)
