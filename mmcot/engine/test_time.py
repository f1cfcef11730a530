"""What tools/test.py adds to a config: drawn predictions, test-time
augmentation and saved results, for mmpretrain, mmdet and mmseg configs
alike.

Each library's own hooks, TTA models and result dumps do the work; these
functions set them up as mmpretrain's and mmdet's ``tools/test.py`` do,
with one behaviour for both where theirs differ (``--show-dir`` is the
folder the images go to, for both).
"""
import copy
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config, ConfigDict
from mmpretrain.engine.hooks import VisualizationHook
from mmpretrain.registry import HOOKS

from mmcot.cli import output_file_problem

#: what ``--out`` may end with: predictions are pickled, metrics are dumped
#: in the format the suffix names
PICKLE_SUFFIXES = ('.pkl', '.pickle')
METRIC_SUFFIXES = PICKLE_SUFFIXES + ('.json', '.yaml', '.yml')


def check_test_options(out: Optional[str], out_item: Optional[str],
                       show: bool) -> None:
    """Raise ValueError, naming the option, for options that cannot work,
    before anything is built."""
    if out_item is not None and out is None:
        raise ValueError('--out-item needs --out FILE to write to')
    if out is not None:
        suffixes = METRIC_SUFFIXES if out_item == 'metrics' else \
            PICKLE_SUFFIXES
        if not out.endswith(suffixes):
            what = 'metrics' if out_item == 'metrics' else 'predictions'
            raise ValueError(f'--out {out}: {what} are written to a file '
                             f'ending with one of {", ".join(suffixes)}')
        problem = output_file_problem(out, '--out')
        if problem:
            raise ValueError(problem)
    if show and sys.platform.startswith('linux') and not (
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        raise ValueError('--show opens a window, and this session has no '
                         'display (DISPLAY is not set): use --show-dir DIR '
                         'to write the images instead')


@HOOKS.register_module()
class IndexedVisualizationHook(VisualizationHook):
    """mmpretrain's ``VisualizationHook``, each drawn image saved as
    ``<index in the test set>_<file name>.png``.

    mmpretrain's names the file after the image's file name alone, so the
    images of a class-per-folder dataset (``cat/0001.png``,
    ``dog/0001.png``) overwrite each other. The index is the sample's
    ``sample_idx``, or where a pipeline drops it the count of images drawn
    before (a batch's size times its index would misnumber those after a
    smaller batch).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._images_seen = 0

    def _draw_samples(self, batch_idx: int, data_batch: dict,
                      data_samples, step: int = 0) -> None:
        if not self.enable:
            return
        for image, sample in zip(data_batch['inputs'], data_samples):
            index = sample.get('sample_idx')
            if index is None:
                index = self._images_seen
            self._images_seen += 1
            if index % self.interval:
                continue
            name = f'{index:06d}_' + osp.splitext(
                osp.basename(sample.get('img_path', '')))[0]
            draw_args = dict(self.draw_args)
            if self.out_dir is not None:
                draw_args['out_file'] = osp.join(self.out_dir, name + '.png')
            self._visualizer.visualize_cls(
                image=image.permute(1, 2, 0).cpu().numpy().astype('uint8'),
                data_sample=sample,
                step=step,
                name=name,
                **draw_args)


def enable_visualization(cfg: Config,
                         show: bool = False,
                         show_dir: Optional[str] = None,
                         wait_time: float = 2.,
                         interval: int = 1) -> None:
    """Turn on the config's visualization hook for the test run.

    Args:
        cfg (Config): An mmpretrain, mmdet or mmseg config; its
            ``default_hooks`` must hold ``visualization`` (their default
            runtimes do).
        show (bool): Show each drawn image in a window.
        show_dir (str, optional): Write the drawn images (predictions, and
            for detection and segmentation the ground truth beside them)
            to this folder, named after the image files (classification:
            prefixed with their index in the test set, which keeps them
            apart).
        wait_time (float): Seconds each window stays open.
        interval (int): Draw every ``interval``-th test image.
    """
    if interval < 1:
        raise ValueError(f'--interval must be at least 1, got {interval}')
    hook = cfg.get('default_hooks', {}).get('visualization')
    if not hook:
        raise ValueError(
            'the config has no default_hooks.visualization to draw with; '
            "add visualization=dict(type='VisualizationHook') "
            "(mmpretrain) or dict(type='DetVisualizationHook') (mmdet)")
    if show_dir and osp.exists(show_dir) and not osp.isdir(show_dir):
        raise ValueError(f'--show-dir {show_dir} is a file, not a folder')
    images = _test_image_folder(cfg)
    if show_dir and images and osp.realpath(show_dir) == osp.realpath(images):
        # mmdet's and mmseg's drawings take the images' file names
        raise ValueError(f'--show-dir {show_dir} is the folder of the test '
                         'images, which the drawings would overwrite; give '
                         'another folder')
    out_dir = osp.abspath(show_dir) if show_dir else None
    if cfg.get('default_scope') == 'mmdet':
        # an absolute folder: mmdet joins it to work_dir/timestamp otherwise
        hook.update(draw=True, show=show, wait_time=wait_time,
                    interval=interval, test_out_dir=out_dir)
    elif cfg.get('default_scope') == 'mmseg':
        from .seg_visualization import SegFileVisualizationHook
        hook.update(type=SegFileVisualizationHook.__name__, draw=True,
                    show=show, wait_time=wait_time, interval=interval,
                    out_dir=out_dir)
    else:
        hook.update(type='IndexedVisualizationHook', enable=True, show=show,
                    wait_time=wait_time, interval=interval, out_dir=out_dir)


def _innermost_dataset(dataset: dict) -> dict:
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def _test_dataset(cfg: Config) -> dict:
    """The config of the dataset the test images come from (inside its
    wrappers); empty without a test dataloader."""
    loader = cfg.get('test_dataloader') or {}
    return _innermost_dataset(loader.get('dataset') or {})


def _test_image_folder(cfg: Config) -> Optional[str]:
    """The folder of the test images an mmpretrain, mmdet or mmseg dataset
    config names (``data_root`` joined with its image prefix), if any."""
    dataset = _test_dataset(cfg)
    prefix = dataset.get('data_prefix') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img') or prefix.get('img_path') or ''
    root = dataset.get('data_root') or ''
    if not isinstance(root, str) or not isinstance(prefix, str):
        return None
    return osp.join(root, prefix) if root or prefix else None


def enable_tta(cfg: Config) -> None:
    """Test with test-time augmentation.

    The config's own ``tta_model`` and ``tta_pipeline`` are used where it
    has them; otherwise the test pipeline is run on each image and on its
    horizontal flip, and the results merged as the libraries' own test
    tools do: mmpretrain averages the class scores
    (``AverageClsScoreTTA``), mmdet merges the boxes with NMS at IoU 0.5,
    keeping 100 (``DetTTAModel``; masks cannot be merged, so detectors with
    a mask head are refused), mmseg averages the class logits of the
    flipped-back maps (``SegTTAModel``).
    """
    scope = cfg.get('default_scope')
    detection = scope == 'mmdet'
    dataset = _test_dataset(cfg)
    if 'tta_pipeline' not in cfg and not dataset.get('pipeline'):
        raise ValueError(
            '--tta: the test dataset has no pipeline of its own to augment '
            '(none, or several datasets); set tta_pipeline in the config')
    if detection and 'tta_model' not in cfg and (cfg.model.get(
            'roi_head') or {}).get('mask_head'):
        raise ValueError(
            '--tta: mmdet merges flipped boxes but not masks (DetTTAModel), '
            'and this config predicts masks; set tta_model in the config to '
            'a TTA model that merges them')
    if 'tta_model' not in cfg:
        if detection:
            cfg.tta_model = dict(
                type='DetTTAModel',
                tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                             max_per_img=100))
        else:
            cfg.tta_model = dict(type='SegTTAModel' if scope ==
                                 'mmseg' else 'AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        pipeline = copy.deepcopy(dataset.pipeline)
        pack = copy.deepcopy(pipeline[-1])
        if detection and 'meta_keys' in pack:
            # DetTTAModel undoes each flip from these
            pack['meta_keys'] = tuple(
                dict.fromkeys((*pack['meta_keys'], 'flip', 'flip_direction')))
        pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='RandomFlip', prob=1.),
                dict(type='RandomFlip', prob=0.)
            ], [pack]])
        cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def dump_predictions_metric(cfg: Config, out_file: str):
    """The metric that pickles every prediction to ``out_file`` when the
    evaluation ends: mmdet's ``DumpDetResults`` (masks RLE-encoded) for a
    detection config, MMEngine's ``DumpResults`` otherwise."""
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out_file)
