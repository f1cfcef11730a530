// Device-agnostic declarations of the local aggregation op.
#ifndef MMCOT_LOCAL_AGGREGATION_H
#define MMCOT_LOCAL_AGGREGATION_H

#include <ATen/ATen.h>

#include <vector>

#include "../common/local_aggregation_shape.h"
#include "../common/pytorch_device_registry.hpp"

namespace mmcot {

struct LocalAggregationForwardOp {
  using Fn = void (*)(const at::Tensor& input, const at::Tensor& weight,
                      at::Tensor& output, const LocalAggregationShape& shape);
  static constexpr const char* name = "local_aggregation_forward";
};

// grad_input / grad_weight may be undefined tensors when not required.
struct LocalAggregationBackwardOp {
  using Fn = void (*)(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& weight, at::Tensor& grad_input,
                      at::Tensor& grad_weight,
                      const LocalAggregationShape& shape);
  static constexpr const char* name = "local_aggregation_backward";
};

// The C++ entry points (local_aggregation.cpp): checks, device dispatch;
// the operators of pybind.cpp call them.
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

#endif  // MMCOT_LOCAL_AGGREGATION_H
