from .detectron2_cascade_roi_head import Detectron2CascadeRoIHead

__all__ = ['Detectron2CascadeRoIHead']
