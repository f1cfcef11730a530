"""Build and install mmcot with its compiled op extension ``mmcot._ext``.

The C++ CPU kernels are always built. The CUDA kernels are added with
``FORCE_CUDA=1``, left out with ``FORCE_CUDA=0``, and otherwise added when a
GPU is visible and the CUDA toolkit is found; ``MMCOT_WITH_OPS=0`` skips the
extension, and the op then runs its pure-PyTorch reference.
"""
import glob
import os
import os.path as osp
import sys

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
CSRC = osp.join('mmcot', 'ops', 'csrc')


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'mmcot', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def parse_requirements(name):
    with open(osp.join(ROOT, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def cuda_paths():
    """Include and library folders that torch's CUDA wheels keep apart.

    The headers of the CUDA runtime come with torch's ``nvidia`` wheels; the
    runtime library to link is the toolkit's. ``CUDA_HOME`` may point at a
    folder of wrapper scripts (``/usr/local`` for ``/usr/local/bin/nvcc``),
    so ``/usr/local/cuda`` is tried too.
    """
    import torch
    from torch.utils.cpp_extension import CUDA_HOME
    site = osp.dirname(osp.dirname(torch.__file__))
    include_dirs = glob.glob(osp.join(site, 'nvidia', 'cu*', 'include'))
    library_dirs = []
    for home in (os.getenv('CUDA_HOME'), CUDA_HOME, '/usr/local/cuda'):
        for lib in ('lib64', 'lib'):
            folder = osp.join(home or '', lib)
            if home and osp.isfile(osp.join(folder, 'libcudart.so')):
                library_dirs.append(folder)
        if library_dirs:
            break
    return include_dirs, library_dirs


def compile_flags() -> dict:
    """The C++ ('cxx') and nvcc ('nvcc') flags of the kernels, for
    mmcot._ext and for the benchmarks' builds of other kernels."""
    # no trapping math (as torch): lets GCC vectorise the masked loops
    flags = dict(cxx=['-O3', '-fno-trapping-math'],
                 nvcc=['-O3', '--expt-relaxed-constexpr'])
    if sys.platform.startswith('linux'):
        # the device registry stays the module's own: GCC would otherwise
        # merge its function-local statics with those of any other build of
        # the kernels loaded in the process (STB_GNU_UNIQUE), which could
        # then replace these kernels
        flags['cxx'].append('-fno-gnu-unique')
        flags['nvcc'].append('-Xcompiler=-fno-gnu-unique')
    flags['cxx'] += openmp_flags()
    return flags


def openmp_flags() -> list:
    """Compiler and linker flags of OpenMP, without which ATen's inline
    ``at::parallel_for`` runs its whole range on one thread in an extension
    (the kernels' tasks would never run in parallel). On Linux the module
    then needs ``libgomp.so.1``, which torch has loaded (its own copy), so
    the kernels share torch's thread pool and ``torch.set_num_threads``."""
    return ['-fopenmp'] if sys.platform.startswith('linux') else []


def kernel_sources(csrc: str, with_cuda: bool) -> list:
    """The sources under ``csrc`` of the kernels and their dispatch (the
    CUDA kernels with ``with_cuda``), without the Python binding; for
    mmcot._ext and for the benchmarks' builds of other kernels."""
    pytorch = osp.join(csrc, 'pytorch')
    sources = [osp.join(pytorch, 'local_aggregation.cpp')]
    sources += sorted(glob.glob(osp.join(pytorch, 'cpu', '*.cpp')))
    if with_cuda:
        sources += sorted(glob.glob(osp.join(pytorch, 'cuda', '*.cu')))
    return sources


def get_extensions():
    if os.getenv('MMCOT_WITH_OPS', '1') == '0':
        return []
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    flags = compile_flags()
    define_macros = []
    force_cuda = os.getenv('FORCE_CUDA')
    if force_cuda is not None:
        with_cuda = force_cuda == '1'
    else:
        from torch.utils.cpp_extension import CUDA_HOME
        with_cuda = torch.cuda.is_available() and CUDA_HOME is not None
    sources = kernel_sources(CSRC, with_cuda) + [
        osp.join(CSRC, 'pytorch', 'pybind.cpp')
    ]
    if with_cuda:
        define_macros.append(('WITH_CUDA', None))
        include_dirs, library_dirs = cuda_paths()
        return [
            CUDAExtension(
                name='mmcot._ext',
                sources=sources,
                include_dirs=include_dirs,
                library_dirs=library_dirs,
                define_macros=define_macros,
                extra_compile_args=flags,
                extra_link_args=openmp_flags())
        ]
    return [
        CppExtension(
            name='mmcot._ext',
            sources=sources,
            define_macros=define_macros,
            extra_compile_args={'cxx': flags['cxx']},
            extra_link_args=openmp_flags())
    ]


def add_mim_extension():
    """Expose configs, tools and model-index.yml as ``mmcot/.mim`` (as
    OpenMMLab packages do), where ``mim`` and mmpretrain's model hub find
    them: links in an editable install, copies in a wheel."""
    import shutil
    import sys
    mode = 'copy' if {'bdist_wheel', 'sdist'} & set(sys.argv) else 'symlink'
    mim = osp.join(ROOT, 'mmcot', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = osp.join(ROOT, name), osp.join(mim, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


def get_cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {'build_ext': BuildExtension.with_options(use_ninja=True)}


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmcot',
        version=get_version(),
        description='Contextual Transformer Networks (CoTNet) for OpenMMLab',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        packages=find_packages(include=('mmcot', 'mmcot.*')),
        include_package_data=True,
        package_data={'mmcot': ['.mim/model-index.yml', '.mim/configs/*/*.py',
                                '.mim/configs/_base_/*/*.py',
                                '.mim/configs/*/*.yml', '.mim/tools/*.py',
                                '.mim/tools/*/*.py', '.mim/tools/*.sh']},
        python_requires='>=3.8',
        install_requires=parse_requirements('runtime.txt'),
        ext_modules=get_extensions(),
        cmdclass=get_cmdclass(),
        zip_safe=False)
