"""mmcot.engine.test_time's hook on its own (tools/test.py's runs are in
tests/test_tools)."""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample
from mmpretrain.visualization import UniversalVisualizer

from mmcot.engine.test_time import (IndexedVisualizationHook, enable_tta,
                                    enable_visualization)

from ..conftest import REPO

DEMO = 'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py'


@pytest.mark.parametrize('with_sample_idx', [True, False])
def test_indexed_drawings_keep_their_index_past_a_smaller_batch(
        tmp_path, with_sample_idx):
    """8 images of a class-per-folder set in batches of 3 (the last one of
    2): 8 files, each named by the image's index in the test set."""
    visualizer = UniversalVisualizer.get_instance(
        f'indexed_{with_sample_idx}')
    visualizer.dataset_meta = dict(classes=('a', 'b', 'c', 'd'))
    hook = IndexedVisualizationHook(enable=True, interval=1,
                                    out_dir=str(tmp_path))
    paths = [f'data/{c}/{i}.png' for c in 'abcd' for i in range(2)]
    samples = []
    for index, path in enumerate(paths):
        meta = dict(img_path=path)
        if with_sample_idx:
            meta['sample_idx'] = index
        samples.append(
            DataSample(metainfo=meta).set_gt_label(0).set_pred_score(
                torch.tensor([.7, .1, .1, .1])))
    for batch_idx, first in enumerate(range(0, 8, 3)):
        batch = samples[first:first + 3]
        images = [torch.zeros(3, 16, 16, dtype=torch.uint8)] * len(batch)
        hook._draw_samples(batch_idx, dict(inputs=images), batch)
    assert sorted(os.listdir(tmp_path)) == [
        f'{index:06d}_{index % 2}.png' for index in range(8)
    ]


@pytest.mark.parametrize('config', [
    'configs/cotnet/cotnet-tiny_1xb32-15e_shapes.py',
    'configs/faster_rcnn/'
    'faster-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py',
    'configs/upernet/upernet_cotnet-tiny_1xb8-3k_shapes-128x128.py',
])
def test_show_dir_may_not_be_the_test_image_folder(config, tmp_path):
    """mmdet's and mmseg's drawings take the images' file names: drawn into
    the images' own folder they would replace them."""
    cfg = Config.fromfile(osp.join(REPO, config))
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    dataset.data_root = str(tmp_path)
    prefix = dataset.data_prefix
    folder = tmp_path / (prefix if isinstance(prefix, str) else
                         prefix.get('img') or prefix.get('img_path'))
    folder.mkdir(parents=True)
    with pytest.raises(ValueError, match='is the folder of the test images'):
        enable_visualization(copy.deepcopy(cfg), show_dir=str(folder))
    enable_visualization(cfg, show_dir=str(tmp_path / 'drawn'))  # elsewhere


def test_segmentation_tta_merges_with_mmseg_model():
    """A segmentation config without its own TTA gets mmseg's
    SegTTAModel (mmpretrain's would average class scores of an image)."""
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/upernet/upernet_cotnet-tiny_1xb8-3k_shapes-128x128.py'))
    cfg.pop('tta_model', None)
    cfg.pop('tta_pipeline', None)
    enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.type == 'EncoderDecoder'
    assert cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'


def test_tta_needs_a_pipeline_to_augment():
    cfg = Config.fromfile(osp.join(REPO, DEMO))
    cfg.test_dataloader.dataset = dict(type='ConcatDataset',
                                       datasets=[cfg.test_dataloader.dataset])
    with pytest.raises(ValueError, match='no pipeline of its own'):
        enable_tta(cfg)
    cfg.test_dataloader = None
    with pytest.raises(ValueError, match='no pipeline of its own'):
        enable_tta(cfg)
