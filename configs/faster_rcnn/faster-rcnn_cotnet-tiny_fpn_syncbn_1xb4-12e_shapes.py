# The embedded detection demo for boxes only: the Mask R-CNN demo without
# its mask branch, i.e. Faster R-CNN on the reduced CoTNet.
#   python tools/dataset_converters/make_shapes.py det data/shapes_coco
#   python tools/train.py configs/faster_rcnn/faster-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py  # noqa: E501
_base_ = '../mask_rcnn/mask-rcnn_cotnet-tiny_fpn_syncbn_1xb4-12e_shapes.py'

model = dict(
    type='FasterRCNN',
    roi_head=dict(mask_roi_extractor=None, mask_head=None))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric='bbox')
test_evaluator = val_evaluator
