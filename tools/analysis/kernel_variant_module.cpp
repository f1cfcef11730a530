// A benchmark-only module of the local aggregation op's C++ entry points
// (checks, device dispatch, kernels) without the torch.library operators,
// so that several builds of the kernels load beside mmcot._ext in one
// process. Built by tools/analysis/build_kernel_variants.py.
#include <torch/extension.h>

// the working tree's declarations: the variants of --commit build that
// commit's sources, whose entry points have the same signatures
#include "../../mmcot/ops/csrc/pytorch/local_aggregation.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("local_aggregation_forward", &mmcot::local_aggregation_forward);
  m.def("local_aggregation_backward", &mmcot::local_aggregation_backward);
}
