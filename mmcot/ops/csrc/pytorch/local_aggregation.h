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

// The same on channels-last tensors: input (N, C, H, W) in channels-last
// memory, weight (N, heads, G, K*K, H', W') pixel-major (the memory of a
// channels-last (N, heads*G*K*K, H', W') tensor), output channels-last.
// Devices without it run the contiguous kernels.
struct LocalAggregationForwardChannelsLastOp {
  using Fn = LocalAggregationForwardOp::Fn;
  static constexpr const char* name = "local_aggregation_forward_channels_last";
};

// forward on the weights normalised by GroupNorm, each (sample, head,
// group) of the weight one normalisation group; gn_weight, gn_bias
// (M, heads, G, K*K) contiguous, sample n using those of n % M. input,
// weight and output contiguous or, with channels_last, in the layouts of
// LocalAggregationForwardChannelsLastOp. Devices without it normalise with
// at::group_norm and run the forward.
struct LocalAggregationGroupNormedForwardOp {
  using Fn = void (*)(const at::Tensor& input, const at::Tensor& weight,
                      const at::Tensor& gn_weight, const at::Tensor& gn_bias,
                      double eps, bool channels_last, at::Tensor& output,
                      const LocalAggregationShape& shape);
  static constexpr const char* name = "local_aggregation_group_normed_forward";
};

// grad_input / grad_weight may be undefined tensors when not required.
struct LocalAggregationBackwardOp {
  using Fn = void (*)(const at::Tensor& grad_output, const at::Tensor& input,
                      const at::Tensor& weight, at::Tensor& grad_input,
                      at::Tensor& grad_weight,
                      const LocalAggregationShape& shape);
  static constexpr const char* name = "local_aggregation_backward";
};

// The same on channels-last tensors: grad_output, input and grad_input in
// channels-last memory, weight and grad_weight pixel-major (as
// LocalAggregationForwardChannelsLastOp's weight). Devices without it run
// the contiguous kernels.
struct LocalAggregationBackwardChannelsLastOp {
  using Fn = LocalAggregationBackwardOp::Fn;
  static constexpr const char* name =
      "local_aggregation_backward_channels_last";
};

// The memory format of the results for this input: channels-last where its
// memory is (a size-1 batch may have any stride), else what PyTorch
// suggests for its strides.
inline at::MemoryFormat result_memory_format(const at::Tensor& input) {
  if (input.is_contiguous(at::MemoryFormat::ChannelsLast) &&
      !input.is_contiguous()) {
    return at::MemoryFormat::ChannelsLast;
  }
  return input.suggest_memory_format();
}

// The weight (N, heads, G, K*K, H', W') with the memory of a channels-last
// (N, heads*G*K*K, H', W') tensor: all weights of one pixel together (a
// copy unless it lies so).
inline at::Tensor pixel_major(const at::Tensor& weight) {
  return weight.permute({0, 4, 5, 1, 2, 3})
      .contiguous()
      .permute({0, 3, 4, 5, 1, 2});
}

// Whether a weight lies pixel-major and not contiguous (a view of a
// channels-last embedding, as a CoT layer's).
inline bool is_pixel_major(const at::Tensor& weight) {
  return !weight.is_contiguous() &&
         weight.permute({0, 4, 5, 1, 2, 3}).is_contiguous();
}

// An uninitialised pixel-major tensor of the weight's sizes.
inline at::Tensor empty_pixel_major(c10::SymIntArrayRef sizes,
                                    const at::TensorOptions& options) {
  return at::empty_symint({sizes[0], sizes[4], sizes[5], sizes[1], sizes[2],
                           sizes[3]},
                          options)
      .permute({0, 3, 4, 5, 1, 2});
}

// The C++ entry points (local_aggregation.cpp): checks, device dispatch;
// the operators of pybind.cpp call them. Tensors of any strides: the
// forward returns a channels-last output for a channels-last input (as
// convolutions do), and the backward returns grad_input in the input's
// memory format and grad_weight in the weight's layout (pixel-major where
// the weight is, else contiguous).
at::Tensor local_aggregation_forward(const at::Tensor& input,
                                     const at::Tensor& weight,
                                     std::vector<int64_t> kernel_size,
                                     std::vector<int64_t> stride,
                                     std::vector<int64_t> padding,
                                     std::vector<int64_t> dilation);
// local_aggregation_forward(input, GroupNorm(weight)) (see
// LocalAggregationGroupNormedForwardOp), inference only.
at::Tensor local_aggregation_group_normed_forward(
    const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& gn_weight, const at::Tensor& gn_bias, double eps,
    std::vector<int64_t> kernel_size, std::vector<int64_t> stride,
    std::vector<int64_t> padding, std::vector<int64_t> dilation);
std::vector<at::Tensor> local_aggregation_backward(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, std::vector<int64_t> kernel_size,
    std::vector<int64_t> stride, std::vector<int64_t> padding,
    std::vector<int64_t> dilation, bool need_input_grad,
    bool need_weight_grad);

}  // namespace mmcot

#endif  // MMCOT_LOCAL_AGGREGATION_H
