"""Build the local aggregation kernels of an earlier commit as a module of
their own, for benchmark_op.py to time beside the current ones.

    python tools/analysis/build_previous_kernels.py [--commit REV]
        [--out build/previous_kernels] [--cuda-arch 9.0]

The sources under ``mmcot/ops/csrc`` at ``--commit`` (default: the last
commit before the CUDA kernels were redesigned) are taken with ``git
archive`` and compiled with the Python running this script, as module
``mmcot_previous_ext`` in ``--out``, with the CUDA kernels when nvcc is
found and ``FORCE_CUDA`` is not ``0`` (as for setup.py). Build it with the
Python and torch of the machine that will run the benchmark
(``TORCH_CUDA_ARCH_LIST`` as ``--cuda-arch`` for a machine without a GPU),
then ``benchmark_op.py --previous-ext OUT/mmcot_previous_ext.so``. A commit
that registers the torch.library operators (from 4039af7 on) would register
them a second time in the benchmark's process: build its kernels with
``build_kernel_variants.py --commit REV`` instead.
"""
import argparse
import importlib.util
import io
import os
import os.path as osp
import subprocess
import sys
import tarfile
import tempfile
from typing import Optional

#: the last commit with the one-thread-per-element CUDA kernels
PREVIOUS_KERNELS = '6bd072feb4aa845ee716ab2a0eebd5e166bad1db'
NAME = 'mmcot_previous_ext'


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--commit', default=PREVIOUS_KERNELS)
    parser.add_argument('--out', default='build/previous_kernels')
    parser.add_argument(
        '--cuda-arch',
        help='TORCH_CUDA_ARCH_LIST to compile for (default: the visible '
        "GPU's)")
    return parser.parse_args()


def extract_sources(commit: str, dest: str) -> str:
    """``mmcot/ops/csrc`` of ``commit`` under ``dest``; its path."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        archive = subprocess.run(
            ['git', 'archive', '--format=tar', commit, 'mmcot/ops/csrc'],
            cwd=root,
            check=True,
            capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, 'stderr', b'') or str(e).encode()
        raise SystemExit('error: cannot read mmcot/ops/csrc at '
                         f'{commit}: {detail.decode().strip()}')
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter='data')
    return osp.join(dest, 'mmcot', 'ops', 'csrc')


def load_setup():
    """The repository's setup.py as a module (its compile flags and CUDA
    folders)."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    spec = importlib.util.spec_from_file_location('mmcot_setup',
                                                  osp.join(root, 'setup.py'))
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return setup


def wants_cuda() -> bool:
    """Whether the builds take the CUDA kernels too: when nvcc is found and
    ``FORCE_CUDA`` is not ``0``. Unlike setup.py they need no visible GPU,
    as they may be made for another machine (``--cuda-arch``)."""
    from torch.utils.cpp_extension import CUDA_HOME
    return CUDA_HOME is not None and os.getenv('FORCE_CUDA') != '0'


def build_module(name: str,
                 sources: list,
                 folder: str,
                 with_cuda: bool,
                 macros: Optional[dict] = None) -> None:
    """Compile ``sources`` as extension module ``name`` in ``folder`` with
    setup.py's flags (the module keeps its device registry to itself, so
    it loads beside mmcot._ext without replacing its kernels), the CUDA
    kernels too with ``with_cuda``, nvcc given ``macros``."""
    from torch.utils.cpp_extension import load
    setup = load_setup()
    flags = setup.compile_flags()
    include_dirs, library_dirs = (setup.cuda_paths() if with_cuda else
                                  ([], []))
    load(name=name,
         sources=sources,
         extra_cflags=flags['cxx'] + ['-DWITH_CUDA'] * with_cuda,
         extra_cuda_cflags=flags['nvcc'] +
         [f'-D{key}={value}' for key, value in (macros or {}).items()],
         extra_include_paths=include_dirs,
         extra_ldflags=[f'-L{d}' for d in library_dirs] +
         setup.openmp_flags(),
         build_directory=folder,
         with_cuda=with_cuda,
         verbose=False)


def main():
    args = parse_args()
    if args.cuda_arch:
        os.environ['TORCH_CUDA_ARCH_LIST'] = args.cuda_arch
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csrc = extract_sources(args.commit, tmp)
        with_cuda = wants_cuda()
        sources = load_setup().kernel_sources(csrc, with_cuda)
        sources.append(osp.join(csrc, 'pytorch', 'pybind.cpp'))
        build_module(NAME, sources, args.out, with_cuda)
    built = osp.join(args.out, f'{NAME}.so')
    print(f'{built}: the kernels of {args.commit[:12]}, '
          f'{"with" if with_cuda else "without"} CUDA')
    return 0


if __name__ == '__main__':
    sys.exit(main())
