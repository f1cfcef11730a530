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
  m.def("local_aggregation_forward", &mmcot::local_aggregation_forward,
        "local aggregation forward", py::arg("input"), py::arg("weight"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"));
  m.def("local_aggregation_backward", &mmcot::local_aggregation_backward,
        "local aggregation backward", py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("kernel_size"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("need_input_grad"),
        py::arg("need_weight_grad"));
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
