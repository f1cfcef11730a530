"""mmcot's configs in mmpretrain's model hub.

With mmcot installed, ``mmpretrain.list_models('cotnet*')`` lists its
classification configs and ``mmpretrain.get_model('cotnet50_8xb64_in1k')``
builds one, as for mmpretrain's own models.
"""
import os.path as osp


def model_index_path() -> str:
    """``model-index.yml`` as installed (``mmcot/.mim``) or in the source
    tree; empty if neither exists."""
    here = osp.dirname(osp.abspath(__file__))
    for path in (osp.join(here, '.mim', 'model-index.yml'),
                 osp.join(osp.dirname(here), 'model-index.yml')):
        if osp.isfile(path):
            return path
    return ''


#: the metafile of the classification configs, the only ones mmpretrain's
#: model hub can build (the detection configs are mmdet's)
CLASSIFICATION_METAFILE = osp.join('configs', 'cotnet', 'metafile.yml')


_registered = set()  # the metafiles registered in this process


def register_models() -> None:
    """Register mmcot's classification metafile with
    ``mmpretrain.apis.ModelHub``, once (ModelHub refuses a second
    registration of a name)."""
    from mmpretrain.apis import ModelHub
    path = model_index_path()
    if not path:
        return
    root = osp.dirname(path)
    metafile = osp.join(root, CLASSIFICATION_METAFILE)
    if metafile in _registered:
        return
    ModelHub.register_model_index(metafile, config_prefix=root)
    _registered.add(metafile)
