from .official_checkpoint import (OFFICIAL_VARIANTS,
                                  convert_official_state_dict, detect_variant,
                                  unwrap_state_dict)
from .state_dict_check import (StateDictError, check_state_dict,
                               extract_state_dict, load_pretrained_strictly,
                               load_state_dict_from, strip_module_prefix)

__all__ = [
    'OFFICIAL_VARIANTS', 'StateDictError', 'check_state_dict',
    'convert_official_state_dict', 'detect_variant', 'extract_state_dict',
    'load_pretrained_strictly', 'load_state_dict_from', 'strip_module_prefix',
    'unwrap_state_dict'
]
