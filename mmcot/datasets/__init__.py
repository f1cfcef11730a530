from .synthetic_shapes import (SHAPES, make_shapes_classification,
                               make_shapes_detection, make_shapes_segmentation)

__all__ = [
    'SHAPES', 'make_shapes_classification', 'make_shapes_detection',
    'make_shapes_segmentation'
]
