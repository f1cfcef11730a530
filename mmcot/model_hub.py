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


def register_models() -> None:
    """Register mmcot's metafiles with ``mmpretrain.apis.ModelHub``."""
    from mmpretrain.apis import ModelHub
    path = model_index_path()
    if path:
        ModelHub.register_model_index(path, config_prefix=osp.dirname(path))
