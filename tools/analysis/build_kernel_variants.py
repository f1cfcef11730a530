"""Build variants of the local aggregation kernels as modules of their own,
for benchmark_op.py to time beside the shipped kernels in one run.

    python tools/analysis/build_kernel_variants.py [NAME ...]
        [--commit REV] [--out build/kernel_variants] [--cuda-arch 9.0]

A variant is the sources under ``mmcot/ops/csrc`` compiled with the macros
of ``VARIANTS[NAME]`` (the knobs of
``common/cuda/local_aggregation_cuda_kernel.cuh``: threads per block,
minimum blocks per SM, output pixels per thread of the 3 x 3 forward),
default every variant; ``--commit REV`` adds the
kernels of that commit as they are, named ``at_<REV>``. Each is built with
its C++ entry points, its CPU kernels and ``kernel_variant_module.cpp`` in
place of the torch.library operators (one namespace can be registered once
per process), as module ``mmcot_kernels_<NAME>`` in ``--out``, with the
Python running this script (build it with the Python and torch of the
machine that will run the benchmark; ``--cuda-arch`` where that machine's
GPU is not visible), then ``benchmark_op.py --variant-ext OUT/*.so``.
Without nvcc, or with ``FORCE_CUDA=0`` (as for setup.py), only
``--commit`` builds, with the CPU kernels alone: an A/B of CPU kernels.
"""
import argparse
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

from build_previous_kernels import (build_module, extract_sources, load_setup,
                                    wants_cuda)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHIM = osp.join(ROOT, 'tools', 'analysis', 'kernel_variant_module.cpp')
#: name -> macros of local_aggregation_cuda_kernel.cuh
VARIANTS = {
    'min_blocks_1': dict(MMCOT_CUDA_MIN_BLOCKS_PER_SM=1),
    'min_blocks_6': dict(MMCOT_CUDA_MIN_BLOCKS_PER_SM=6),
    'threads_128': dict(MMCOT_CUDA_THREADS_PER_BLOCK=128),
    'threads_512': dict(MMCOT_CUDA_THREADS_PER_BLOCK=512),
    'strip_2': dict(MMCOT_CUDA_STRIP_PIXELS=2),
    'strip_4': dict(MMCOT_CUDA_STRIP_PIXELS=4),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names',
                        nargs='*',
                        metavar='NAME',
                        help=f'variants to build (default: all of '
                        f'{", ".join(VARIANTS)})')
    parser.add_argument('--commit',
                        help='also build the kernels of this commit')
    parser.add_argument('--out', default='build/kernel_variants')
    parser.add_argument(
        '--cuda-arch',
        help='TORCH_CUDA_ARCH_LIST to compile for (default: the visible '
        "GPU's)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(VARIANTS))
    if unknown:
        parser.error(f'unknown variant {", ".join(unknown)}; choose from '
                     f'{", ".join(VARIANTS)}')
    return args


def build(name: str, csrc: str, macros: dict, out: str,
          with_cuda: bool) -> str:
    """Module ``mmcot_kernels_<name>`` of the kernels in ``csrc`` (the
    CUDA kernels with ``macros`` when ``with_cuda``); the path of the
    built file."""
    module = f'mmcot_kernels_{name}'
    folder = osp.join(out, name)
    os.makedirs(folder, exist_ok=True)
    sources = load_setup().kernel_sources(csrc, with_cuda)
    build_module(module, sources + [SHIM], folder, with_cuda, macros)
    built = osp.join(out, f'{module}.so')
    shutil.copyfile(osp.join(folder, f'{module}.so'), built)
    shutil.rmtree(folder)
    return built


def main():
    args = parse_args()
    if args.cuda_arch:
        os.environ['TORCH_CUDA_ARCH_LIST'] = args.cuda_arch
    with_cuda = wants_cuda()
    if not with_cuda and (args.names or not args.commit):
        raise SystemExit('error: the variants are CUDA kernels and there is '
                         'no CUDA toolkit (nvcc) or FORCE_CUDA=0; without '
                         'CUDA only --commit REV builds (CPU kernels)')
    os.makedirs(args.out, exist_ok=True)
    csrc = osp.join(ROOT, 'mmcot', 'ops', 'csrc')
    for name in args.names or (VARIANTS if with_cuda else []):
        print(f'{build(name, csrc, VARIANTS[name], args.out, with_cuda)}: '
              f'{name}, {VARIANTS[name]}')
    if args.commit:
        rev = subprocess.run(['git', 'rev-parse', args.commit],
                             cwd=ROOT,
                             capture_output=True,
                             text=True).stdout.strip() or args.commit
        with tempfile.TemporaryDirectory() as tmp:
            name = f'at_{rev[:12]}'
            built = build(name, extract_sources(args.commit, tmp), {},
                          args.out, with_cuda)
            print(f'{built}: the kernels of {rev[:12]}, '
                  f'{"with" if with_cuda else "without"} CUDA')
    return 0


if __name__ == '__main__':
    sys.exit(main())
