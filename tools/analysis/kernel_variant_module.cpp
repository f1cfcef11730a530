// A benchmark-only module of the local aggregation op's C++ entry points
// (checks, device dispatch, kernels) without the torch.library operators,
// so that several builds of the kernels load beside mmcot._ext in one
// process. Built by tools/analysis/build_kernel_variants.py.
#include <torch/extension.h>

#include <vector>

namespace mmcot {
at::Tensor local_aggregation_forward(const at::Tensor& input,
                                     const at::Tensor& weight,
                                     std::vector<int64_t> kernel_size,
                                     std::vector<int64_t> stride,
                                     std::vector<int64_t> padding,
                                     std::vector<int64_t> dilation);
std::vector<at::Tensor> local_aggregation_backward(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, std::vector<int64_t> kernel_size,
    std::vector<int64_t> stride, std::vector<int64_t> padding,
    std::vector<int64_t> dilation, bool need_input_grad,
    bool need_weight_grad);
}  // namespace mmcot

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("local_aggregation_forward", &mmcot::local_aggregation_forward);
  m.def("local_aggregation_backward", &mmcot::local_aggregation_backward);
}
