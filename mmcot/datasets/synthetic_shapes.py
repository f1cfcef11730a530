"""Deterministic synthetic "shapes" datasets: mmcot's embedded defaults.

Coloured polygons (circle, triangle, square, pentagon, star, cross) on noisy
backgrounds, drawn with OpenCV from a seeded generator: the same files on
every machine, no download. Three layouts:

* classification, in mmpretrain's folder format (``CustomDataset``):
  ``{root}/{split}/{class}/{index:05d}.png``, one shape per image;
* instance segmentation, in COCO format: ``{root}/{split}/*.png`` with
  ``{root}/annotations/instances_{split}.json`` (boxes and polygon masks),
  one to four shapes per image;
* semantic segmentation, in mmseg's ``BaseSegDataset`` layout:
  ``{root}/img_dir/{split}/*.png`` and ``{root}/ann_dir/{split}/*.png``
  (per-pixel class maps, 0 for the background), the same kind of scenes.
"""
import json
import math
import os
import os.path as osp
import zlib
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from mmcot.fileio import atomic_write

SHAPES = ('circle', 'triangle', 'square', 'pentagon', 'star', 'cross')


def shape_polygon(kind: str, center: Tuple[float, float], radius: float,
                  angle: float) -> np.ndarray:
    """The outline of a shape as a (P, 2) float array of (x, y) points."""
    if kind == 'circle':
        corners, radii = 32, [1.0]
    elif kind == 'star':
        corners, radii = 10, [1.0, 0.45]
    elif kind == 'cross':
        # a plus sign: 12 corners on two radii, rotated
        t = 0.34
        points = [(t, 1), (t, t), (1, t), (1, -t), (t, -t), (t, -1),
                  (-t, -1), (-t, -t), (-1, -t), (-1, t), (-t, t), (-t, 1)]
        rot = np.array([[math.cos(angle), -math.sin(angle)],
                        [math.sin(angle), math.cos(angle)]])
        return np.asarray(center) + radius * np.asarray(points) @ rot.T
    else:
        corners = {'triangle': 3, 'square': 4, 'pentagon': 5}[kind]
        radii = [1.0]
    phis = angle + 2 * math.pi * np.arange(corners) / corners
    scale = np.asarray([radii[i % len(radii)] for i in range(corners)])
    return np.stack([
        center[0] + radius * scale * np.cos(phis),
        center[1] + radius * scale * np.sin(phis)
    ], 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gentle random colour gradient with pixel noise, uint8 (H, W, 3)."""
    base = rng.uniform(0, 255, 3)
    corners = base + rng.uniform(-40, 40, (2, 2, 3))
    image = cv2.resize(corners.astype(np.float32), (size, size),
                       interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator,
                        image: np.ndarray) -> Tuple[int, int, int]:
    mean = image.reshape(-1, 3).mean(0)
    while True:
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - mean).sum() > 180:
            return tuple(int(c) for c in colour)


def _draw(image: np.ndarray, polygon: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], colour,
                 lineType=cv2.LINE_AA)


def _check_split_args(count_name: str, count: int, size: int,
                      seed: int) -> None:
    """ValueError naming the argument unless the count is an int >= 0, the
    image size an int >= 16 and the seed an int >= 0."""
    for name, value, least in ((count_name, count, 0), ('size', size, 16),
                               ('seed', seed, 0)):
        if type(value) is not int or value < least:
            raise ValueError(f'{name} must be an int >= {least}, got '
                             f'{value!r}')


def make_classification_split(root: str, split: str, per_class: int,
                              size: int = 64, seed: int = 0) -> int:
    """Write ``per_class`` images of each shape; return the image count."""
    _check_split_args('per_class', per_class, size, seed)
    rng = np.random.default_rng([seed, 0, zlib.crc32(split.encode())])
    for kind in SHAPES:
        folder = osp.join(root, split, kind)
        os.makedirs(folder, exist_ok=True)
        for index in range(per_class):
            image = _background(rng, size)
            radius = rng.uniform(0.22, 0.42) * size
            center = rng.uniform(radius, size - radius, 2)
            polygon = shape_polygon(kind, center, radius,
                                    rng.uniform(0, 2 * math.pi))
            _draw(image, polygon, _contrasting_colour(rng, image))
            _write_png(osp.join(folder, f'{index:05d}.png'), image)
    return per_class * len(SHAPES)


def _write_png(path: str, image: np.ndarray) -> None:
    ok, png = cv2.imencode('.png', image)
    if not ok:
        raise ValueError(f'could not encode {path} as PNG')
    with atomic_write(path) as f:
        f.write(png.tobytes())


def _overlaps(box: Sequence[float], boxes: List[Sequence[float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1
               for b in boxes)


def _scene(rng: np.random.Generator,
           size: int) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """A (size, size, 3) uint8 image of one to four shapes that do not
    overlap, and each shape's (class index, (P, 2) outline)."""
    image = _background(rng, size)
    boxes: List[Sequence[float]] = []
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):  # shapes do not overlap
            radius = rng.uniform(0.1, 0.22) * size
            center = rng.uniform(radius + 1, size - radius - 1, 2)
            kind = int(rng.integers(len(SHAPES)))
            polygon = shape_polygon(SHAPES[kind], center, radius,
                                    rng.uniform(0, 2 * math.pi))
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            if not _overlaps((x0, y0, x1, y1), boxes):
                break
        else:
            continue
        boxes.append((x0, y0, x1, y1))
        _draw(image, polygon, _contrasting_colour(rng, image))
        shapes.append((kind, polygon))
    return image, shapes


def make_detection_split(root: str, split: str, num_images: int,
                         size: int = 128, seed: int = 0) -> Dict:
    """Write a COCO instance-segmentation split; return its annotations."""
    _check_split_args('num_images', num_images, size, seed)
    rng = np.random.default_rng([seed, 1, zlib.crc32(split.encode())])
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, shapes = _scene(rng, size)
        for kind, polygon in shapes:
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            mask = np.zeros((size, size), np.uint8)
            _draw(mask, polygon, 1)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=kind + 1,
                    bbox=[float(x0), float(y0),
                          float(x1 - x0), float(y1 - y0)],
                    area=float(mask.sum()),
                    segmentation=[polygon.round(2).flatten().tolist()],
                    iscrowd=0))
        file_name = f'{image_id:05d}.png'
        _write_png(osp.join(root, split, file_name), image)
        images.append(
            dict(id=image_id, file_name=file_name, width=size, height=size))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name) for i, name in enumerate(SHAPES)
        ])
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with atomic_write(
            osp.join(root, 'annotations', f'instances_{split}.json'),
            'w') as f:
        json.dump(coco, f)
    return coco


def make_segmentation_split(root: str, split: str, num_images: int,
                            size: int = 128, seed: int = 0) -> None:
    """Write a semantic segmentation split: ``img_dir/{split}/*.png`` and
    ``ann_dir/{split}/*.png``, uint8 label maps (0: background, 1 + the
    index in ``SHAPES`` for a shape's pixels)."""
    _check_split_args('num_images', num_images, size, seed)
    rng = np.random.default_rng([seed, 2, zlib.crc32(split.encode())])
    for folder in ('img_dir', 'ann_dir'):
        os.makedirs(osp.join(root, folder, split), exist_ok=True)
    for index in range(num_images):
        image, shapes = _scene(rng, size)
        labels = np.zeros((size, size), np.uint8)
        for kind, polygon in shapes:
            # no anti-aliasing: every pixel gets one class
            cv2.fillPoly(labels, [np.round(polygon).astype(np.int32)],
                         kind + 1, lineType=cv2.LINE_8)
        name = f'{index:05d}.png'
        _write_png(osp.join(root, 'img_dir', split, name), image)
        _write_png(osp.join(root, 'ann_dir', split, name), labels)


def make_shapes_classification(root: str,
                               train_per_class: int = 400,
                               val_per_class: int = 50,
                               size: int = 64,
                               seed: int = 0) -> None:
    """The classification demo dataset (train and val splits)."""
    make_classification_split(root, 'train', train_per_class, size, seed)
    make_classification_split(root, 'val', val_per_class, size, seed)


def make_shapes_detection(root: str,
                          train_images: int = 240,
                          val_images: int = 60,
                          size: int = 128,
                          seed: int = 0) -> None:
    """The detection / instance segmentation demo dataset (COCO format)."""
    make_detection_split(root, 'train', train_images, size, seed)
    make_detection_split(root, 'val', val_images, size, seed)


def make_shapes_segmentation(root: str,
                             train_images: int = 400,
                             val_images: int = 60,
                             size: int = 128,
                             seed: int = 0) -> None:
    """The semantic segmentation demo dataset (mmseg's ``BaseSegDataset``
    layout, classes ``('background',) + SHAPES``)."""
    make_segmentation_split(root, 'train', train_images, size, seed)
    make_segmentation_split(root, 'val', val_images, size, seed)
