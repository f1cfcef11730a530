"""Loading of the compiled extension ``mmcot._ext``."""
import functools
import importlib
import warnings
from types import ModuleType
from typing import Optional


@functools.lru_cache(maxsize=None)
def load_ext() -> Optional[ModuleType]:
    """Return ``mmcot._ext``, or None (with one warning) if it is not built."""
    try:
        return importlib.import_module('mmcot._ext')
    except ImportError as error:
        warnings.warn(
            f'mmcot._ext could not be loaded ({error}); mmcot ops fall back '
            'to their pure-PyTorch references, which are slower and use more '
            'memory. Build it with `pip install --no-build-isolation -e .`.',
            RuntimeWarning,
            stacklevel=3)
        return None


def ext_available() -> bool:
    """Whether the compiled extension is importable."""
    return load_ext() is not None


def ext_with_cuda() -> bool:
    """Whether the compiled extension includes the CUDA kernels."""
    ext = load_ext()
    return ext is not None and bool(ext.with_cuda)


def ext_cpu_kernels() -> Optional[str]:
    """The instruction set of the CPU kernels the extension runs in this
    process (``'avx2'`` or ``'default'``, chosen as torch chooses its own
    from the CPU and ``ATEN_CPU_CAPABILITY``); None without the
    extension."""
    ext = load_ext()
    return None if ext is None else ext.cpu_kernels()
