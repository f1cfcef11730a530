"""Keep ``import mmcot`` working beside a transformers that mmpretrain 1.2.0
cannot use.

mmpretrain imports its multimodal models (BLIP, OFA, LLaVA, ...) with
``mmpretrain.models`` whenever transformers >= 4.28 is installed, and they
import names that transformers 5 no longer has (``apply_chunking_to_forward``
and others in ``transformers.modeling_utils``). ``import mmpretrain.models``
then fails, and with it every CoT backbone, which subclasses mmpretrain's
ResNet. When those names are missing, mmcot tells mmpretrain, before its
models are imported, that the multimodal models are unavailable: mmpretrain
registers its placeholders for them (which say what they need when built)
and imports everything else.
"""
import importlib
import sys
import warnings

#: the transformers names mmpretrain 1.2.0 imports (its multimodal models,
#: ``models/utils/huggingface.py`` and ``tokenizer.py``) when
#: ``WITH_MULTIMODAL`` holds
MMPRETRAIN_MULTIMODAL_IMPORTS = {
    'transformers':
    ('AutoConfig', 'AutoModelForCausalLM', 'AutoTokenizer', 'BartTokenizer',
     'BasicTokenizer', 'BertTokenizer', 'BertTokenizerFast', 'LlamaTokenizer',
     'PreTrainedModel', 'WordpieceTokenizer'),
    'transformers.activations': ('ACT2FN', ),
    'transformers.modeling_outputs':
    ('BaseModelOutputWithPast', 'BaseModelOutputWithPastAndCrossAttentions',
     'BaseModelOutputWithPoolingAndCrossAttentions',
     'CausalLMOutputWithCrossAttentions', 'CausalLMOutputWithPast',
     'ModelOutput', 'Seq2SeqLMOutput'),
    'transformers.modeling_utils':
    ('GenerationConfig', 'GenerationMixin', 'PreTrainedModel',
     'PretrainedConfig', 'apply_chunking_to_forward',
     'find_pruneable_heads_and_indices', 'prune_linear_layer'),
    'transformers.models.auto.auto_factory': ('_BaseAutoModelClass', ),
    'transformers.models.bert.configuration_bert': ('BertConfig', ),
    'transformers.models.opt.configuration_opt': ('OPTConfig', ),
    'transformers.utils':
    ('add_code_sample_docstrings', 'add_start_docstrings',
     'add_start_docstrings_to_model_forward', 'logging',
     'replace_return_docstrings'),
}


def missing_multimodal_imports() -> list:
    """``module.name`` of each name above that does not import."""
    missing = []
    for module, names in MMPRETRAIN_MULTIMODAL_IMPORTS.items():
        try:
            found = importlib.import_module(module)
        except Exception:  # what mmpretrain's own guard catches
            missing.append(module)
            continue
        missing += [f'{module}.{n}' for n in names if not hasattr(found, n)]
    return missing


def guard_mmpretrain_multimodal() -> None:
    """Mark mmpretrain's multimodal models unavailable, with a warning, if
    they would import names the installed transformers lacks; nothing when
    they import or mmpretrain has imported its models already."""
    if 'mmpretrain.models' in sys.modules:
        return
    from mmpretrain.utils import dependency
    if not dependency.WITH_MULTIMODAL:
        return
    missing = missing_multimodal_imports()
    if missing:
        dependency.WITH_MULTIMODAL = False
        warnings.warn(
            'the installed transformers lacks what mmpretrain 1.2.0\'s '
            f'multimodal models import ({", ".join(missing[:3])}'
            f'{", ..." if len(missing) > 3 else ""}): mmcot imports '
            'mmpretrain without them (BLIP, OFA, LLaVA and the other '
            'multimodal models are unavailable; transformers<5 has them)',
            stacklevel=2)
