from .official_checkpoint import (OFFICIAL_VARIANTS,
                                  convert_official_state_dict, detect_variant,
                                  unwrap_state_dict)

__all__ = [
    'OFFICIAL_VARIANTS', 'convert_official_state_dict', 'detect_variant',
    'unwrap_state_dict'
]
