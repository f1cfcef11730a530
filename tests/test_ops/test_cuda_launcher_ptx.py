"""The shipped CUDA launcher, compiled with nvcc for Ampere and Hopper with
torch's types, as setup.py builds it (and for Hopper with the strip kernels
of 4 pixels a thread, as build_kernel_variants.py's strip_4): every kernel
variant is there, the 32-bit-index kernels do no 64-bit division and fit in
64 registers (float32 and 16-bit; the strip backward in 128), nothing
spills. Registers per thread are printed (pytest -s)."""
import glob
import os.path as osp
import re
import shutil
import subprocess

import pytest
import torch

import mmcot.ops.ext_loader as ext_loader

CSRC = osp.join(osp.dirname(ext_loader.__file__), 'csrc')
LAUNCHER = osp.join(CSRC, 'pytorch', 'cuda', 'local_aggregation_cuda.cu')
DTYPES = {'f': 'float32', 'd': 'float64', 'N3c104HalfE': 'float16',
          'N3c108BFloat16E': 'bfloat16'}


def compile_launcher(arch, folder, macros=()):
    """(PTX text, ptxas report) of the launcher for sm_<arch>, with the
    ``-D`` definitions ``macros``."""
    from torch.utils.cpp_extension import include_paths
    site = osp.dirname(osp.dirname(torch.__file__))
    includes = include_paths('cuda') + glob.glob(
        osp.join(site, 'nvidia', 'cu*', 'include'))
    command = [
        'nvcc', '-std=c++20', '-O3', '--expt-relaxed-constexpr',
        f'-gencode=arch=compute_{arch},code=sm_{arch}', '-DWITH_CUDA',
        *[f'-D{macro}' for macro in macros],
        f'-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}',
        *[f'-I{path}' for path in includes], '-Xcompiler', '-fPIC', '-c',
        LAUNCHER, '-o',
        osp.join(folder, 'launcher.o'), '--keep', f'--keep-dir={folder}',
        '--resource-usage'
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    [ptx] = glob.glob(osp.join(folder, '*.ptx'))
    with open(ptx) as f:
        return f.read(), result.stderr


def kernel_variant(name):
    """(kernel, dtype, index bits, unit stride or vectors) of a mangled
    entry name."""
    kernel = re.search(r'local_aggregation_(\w+?)_cuda_kernel', name).group(1)
    args = re.search(r'cuda_kernelI(Lb[01]E|Li\d+ELb[01]E)?(.+?)([il])EEv',
                     name)
    # the general backward's unit stride, or the strip kernels' vectors
    unit = None if args.group(1) is None else args.group(1).endswith('Lb1E')
    bits = 32 if args.group(3) == 'i' else 64
    return kernel, DTYPES[args.group(2)], bits, unit


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='needs nvcc')
@pytest.mark.parametrize('arch,pixels', [('80', 1), ('90', 1), ('90', 4)],
                         ids=['sm_80', 'sm_90', 'sm_90-strip-4'])
def test_launcher_ptx(arch, pixels, tmp_path):
    """pixels: MMCOT_CUDA_STRIP_PIXELS; above 1 the launcher holds the
    benchmark-only strip kernels (3 x 3 windows) too."""
    ptx, report = compile_launcher(
        arch, str(tmp_path),
        [f'MMCOT_CUDA_STRIP_PIXELS={pixels}'])
    bodies = dict(
        (body.split('(')[0].strip(), body)
        for body in re.split(r'\.visible \.entry ', ptx)[1:])
    variants = {kernel_variant(name): name for name in bodies}
    expected = {(kernel, dtype, bits, unit)
                for dtype in DTYPES.values() for bits in (32, 64)
                for kernel, unit in (('forward', None), ('backward', True),
                                     ('backward', False)) +
                (('forward_strip', False), ('forward_strip', True),
                 ('backward_strip', False),
                 ('backward_strip', True)) * (pixels > 1)}
    assert set(variants) == expected
    registers = dict(
        re.findall(r'Function properties for (\S+)\n[^\n]*\n[^\n]*Used (\d+) '
                   r'registers', report))
    spills = re.findall(r'(\d+) bytes spill stores, (\d+) bytes spill loads',
                        report)
    assert spills and all(s == ('0', '0') for s in spills), report
    print(f'\nsm_{arch} registers per thread:')
    for (kernel, dtype, bits, unit), name in sorted(
            variants.items(), key=lambda kv: str(kv[0])):
        divisions = re.findall(r'\b(?:div|rem)\.[su]64\b', bodies[name])
        if bits == 32:
            assert not divisions, f'{name} divides in 64 bits'
        if bits == 32 and dtype != 'float64':
            # blocks of 256 per SM: 4, the strip backward's 2 (its launch
            # bounds)
            limit = 128 if kernel == 'backward_strip' else 64
            assert int(registers[name]) <= limit, f'{name}: {registers[name]}'
        if kernel.endswith('strip'):
            label = kernel + (' vectors' if unit else ' scalars')
        else:
            label = kernel + ('' if unit is None else
                              ' unit-stride' if unit else ' strided')
        print(f'  {label:24} {dtype:8} {bits}-bit: {registers[name]:>3} '
              f'registers, {len(divisions)} 64-bit div/rem')
