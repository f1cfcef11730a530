"""mmcot._ext keeps its device registry to itself: another shared object
that registers kernels for the op under the same names (a second build of
the kernels, as the benchmarks load beside it, or any other library) cannot
replace the kernels mmcot's op runs. GCC merges the function-local statics
of inline functions across shared objects (STB_GNU_UNIQUE) unless told not
to."""
import os.path as osp
import subprocess
import sys
import textwrap

import mmcot.ops.ext_loader as ext_loader

CSRC = osp.join(osp.dirname(ext_loader.__file__), 'csrc')

# registers a CPU forward that writes 42 everywhere, built as GCC does by
# default (its registry a unique symbol)
IMPOSTOR = r'''
#include "pytorch/local_aggregation.h"

namespace mmcot {
namespace {
void impostor(const at::Tensor&, const at::Tensor&, at::Tensor& output,
              const LocalAggregationShape&) {
  output.fill_(42);
}
}  // namespace

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CPU, impostor);
}  // namespace mmcot
'''

SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from torch.utils.cpp_extension import load
    from mmcot.ops import local_aggregation, local_aggregation_reference
    x = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    w = torch.randn(1, 1, 1, 9, 5, 5, dtype=torch.float64)
    window = (3, 1, 1, 1)
    before = local_aggregation(x, w, *window)
    load(name='mmcot_impostor', sources=[sys.argv[1]],
         extra_include_paths=[sys.argv[2]], build_directory=sys.argv[3],
         is_python_module=False, verbose=False)
    after = local_aggregation(x, w, *window)
    want = local_aggregation_reference(x, w, *window)
    print(torch.allclose(before, want), torch.allclose(after, want),
          bool((after == 42).all()))
''')


def test_another_library_cannot_replace_the_kernels(tmp_path):
    source = tmp_path / 'impostor.cpp'
    source.write_text(IMPOSTOR)
    build = tmp_path / 'build'
    build.mkdir()
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT,
         str(source), CSRC, str(build)],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['True', 'True', 'False']
