from .sync_bn_fallback_hook import SyncBNFallbackHook

__all__ = ['SyncBNFallbackHook']
