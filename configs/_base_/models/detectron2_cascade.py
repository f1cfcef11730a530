# The cascade of the official detectron2 runs (CascadeROIHeads), which the
# Cascade R-CNN and Cascade Mask R-CNN configs take into their mmdet base
# with `{{_base_.cascade_*}}`: L1 box losses for the RPN and the three stages
# (SMOOTH_L1_BETA 0.0), stage losses weighted 1:1:1 with the gradient each
# stage sends to the features scaled by 1/3, stages 2 and 3 relabelling (at
# IoU 0.6, 0.7) every box regressed from the first stage's 512 RoIs instead
# of sampling again with the ground truth added, box regression weights
# (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15) (BBOX_REG_WEIGHTS; the
# target stds are their inverses), test scores averaged over the stages as
# probabilities, and one mask head (mmcot's Detectron2CascadeRoIHead).
cascade_rpn_loss_bbox = dict(_delete_=True, type='L1Loss', loss_weight=1.0)
cascade_roi_head = dict(
    type='Detectron2CascadeRoIHead',
    stage_loss_weights=[1, 1, 1],
    feature_grad_scale=1 / 3,
    bbox_head=[
        dict(
            type='Shared4Conv1FCBBoxHead',
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[1 / w for w in weights]),
            reg_class_agnostic=True,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))
        for weights in ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))
    ])
cascade_rcnn_train_cfg = [
    dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=iou,
            neg_iou_thr=iou,
            min_pos_iou=iou,
            match_low_quality=False,
            ignore_iof_thr=-1),
        sampler=sampler,
        mask_size=28,
        pos_weight=-1,
        debug=False) for iou, sampler in (
            (0.5,
             dict(
                 type='RandomSampler',
                 num=512,
                 pos_fraction=0.25,
                 neg_pos_ub=-1,
                 add_gt_as_proposals=True)),
            (0.6, dict(type='PseudoSampler')),
            (0.7, dict(type='PseudoSampler')),
        )
]
