// Device-agnostic entry of the local aggregation op: checks the tensors,
// allocates the results and dispatches to the registered device kernels.
// The Python wrapper validates arguments with user-facing messages; the
// checks here guard the kernels against direct calls.
#include "local_aggregation.h"

#include <vector>

namespace mmcot {
namespace {

LocalAggregationShape make_shape(const at::Tensor& input,
                                 const at::Tensor& weight,
                                 const std::vector<int64_t>& kernel_size,
                                 const std::vector<int64_t>& stride,
                                 const std::vector<int64_t>& padding,
                                 const std::vector<int64_t>& dilation) {
  TORCH_CHECK(input.dim() == 4, "input must be (N, C, H, W)");
  TORCH_CHECK(weight.dim() == 6, "weight must be (N, heads, G, K*K, H', W')");
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 &&
                  padding.size() == 2 && dilation.size() == 2,
              "kernel_size, stride, padding and dilation need two values");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
              "input and weight must have the same dtype");
  TORCH_CHECK(input.device() == weight.device(),
              "input and weight must be on the same device");
  const auto s = LocalAggregationShape::from_sizes(
      input.sizes().data(), weight.sizes().data(), kernel_size.data(),
      stride.data(), padding.data(), dilation.data());
  TORCH_CHECK(s.kernel_h > 0 && s.kernel_w > 0 && s.stride_h > 0 &&
                  s.stride_w > 0 && s.dilation_h > 0 && s.dilation_w > 0 &&
                  s.pad_h >= 0 && s.pad_w >= 0,
              "kernel_size, stride, dilation must be positive, padding >= 0");
  TORCH_CHECK(weight.size(0) == s.batch, "batch sizes differ");
  TORCH_CHECK(s.groups > 0 && s.channels % s.groups == 0,
              "channels must be divisible by the weight groups");
  TORCH_CHECK(weight.size(3) == s.taps(), "weight dim 3 must be K*K");
  const int64_t out_h =
      output_size(s.height, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  const int64_t out_w =
      output_size(s.width, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  TORCH_CHECK(out_h > 0 && out_w > 0,
              "the input gives an empty output with this window");
  TORCH_CHECK(out_h == s.out_height && out_w == s.out_width,
              "weight spatial size must equal the output size");
  return s;
}

}  // namespace

at::Tensor local_aggregation_forward(const at::Tensor& input,
                                     const at::Tensor& weight,
                                     std::vector<int64_t> kernel_size,
                                     std::vector<int64_t> stride,
                                     std::vector<int64_t> padding,
                                     std::vector<int64_t> dilation) {
  const auto shape =
      make_shape(input, weight, kernel_size, stride, padding, dilation);
  const at::MemoryFormat format = result_memory_format(input);
  // channels-last kernels where the device has them, else the contiguous
  // ones, their output then brought to the input's format
  const bool channels_last_kernels =
      format == at::MemoryFormat::ChannelsLast &&
      DeviceImpls<LocalAggregationForwardChannelsLastOp>::get().find(
          input.device().type()) != nullptr;
  at::Tensor output = at::empty(
      {shape.batch, shape.heads * shape.channels, shape.out_height,
       shape.out_width},
      input.options().memory_format(channels_last_kernels
                                        ? format
                                        : at::MemoryFormat::Contiguous));
  if (output.numel() > 0 && channels_last_kernels) {
    dispatch_device_impl<LocalAggregationForwardChannelsLastOp>(
        input, input.contiguous(format), pixel_major(weight), output, shape);
  } else if (output.numel() > 0) {
    dispatch_device_impl<LocalAggregationForwardOp>(
        input, input.contiguous(), weight.contiguous(), output, shape);
  }
  return output.contiguous(format);
}

at::Tensor local_aggregation_group_normed_forward(
    const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& gn_weight, const at::Tensor& gn_bias, double eps,
    std::vector<int64_t> kernel_size, std::vector<int64_t> stride,
    std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  const auto shape =
      make_shape(input, weight, kernel_size, stride, padding, dilation);
  TORCH_CHECK(gn_weight.dim() == 4 && gn_weight.sizes() == gn_bias.sizes(),
              "gn_weight and gn_bias must both be (M, heads, G, K*K)");
  const int64_t samples = gn_weight.size(0);
  TORCH_CHECK(samples > 0 && shape.batch % samples == 0 &&
                  gn_weight.size(1) == shape.heads &&
                  gn_weight.size(2) == shape.groups &&
                  gn_weight.size(3) == shape.taps(),
              "gn_weight must be (M, heads, G, K*K) with M dividing N");
  for (const at::Tensor* t : {&gn_weight, &gn_bias}) {
    TORCH_CHECK(t->scalar_type() == input.scalar_type() &&
                    t->device() == input.device(),
                "gn_weight and gn_bias must be of the input's dtype and on "
                "its device");
  }
  TORCH_CHECK(eps > 0, "eps must be positive");
  const at::MemoryFormat format = result_memory_format(input);
  const bool fused =
      DeviceImpls<LocalAggregationGroupNormedForwardOp>::get().find(
          input.device().type()) != nullptr;
  if (!fused || input.numel() == 0 || weight.numel() == 0) {
    const at::Tensor normed =
        at::group_norm(
            weight.reshape({shape.batch / samples,
                            samples * shape.heads * shape.groups *
                                shape.taps(),
                            shape.out_height, shape.out_width}),
            samples * shape.heads * shape.groups, gn_weight.reshape(-1),
            gn_bias.reshape(-1), eps)
            .reshape(weight.sizes());
    return local_aggregation_forward(input, normed, kernel_size, stride,
                                     padding, dilation);
  }
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  at::Tensor output = at::empty(
      {shape.batch, shape.heads * shape.channels, shape.out_height,
       shape.out_width},
      input.options().memory_format(format));
  dispatch_device_impl<LocalAggregationGroupNormedForwardOp>(
      input, input.contiguous(format),
      channels_last ? pixel_major(weight) : weight.contiguous(),
      gn_weight.contiguous(), gn_bias.contiguous(), eps, channels_last,
      output, shape);
  return output;
}

std::vector<at::Tensor> local_aggregation_backward(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, std::vector<int64_t> kernel_size,
    std::vector<int64_t> stride, std::vector<int64_t> padding,
    std::vector<int64_t> dilation, bool need_input_grad,
    bool need_weight_grad) {
  const auto shape =
      make_shape(input, weight, kernel_size, stride, padding, dilation);
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type() &&
                  grad_output.device() == input.device(),
              "grad_output must be of the input's dtype and on its device");
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == shape.batch &&
                  grad_output.size(1) == shape.heads * shape.channels &&
                  grad_output.size(2) == shape.out_height &&
                  grad_output.size(3) == shape.out_width,
              "grad_output has the wrong shape");
  const at::MemoryFormat format = result_memory_format(input);
  // channels-last kernels where the device has them, else the contiguous
  // ones, grad_input then brought to the input's format
  const bool channels_last_kernels =
      format == at::MemoryFormat::ChannelsLast &&
      DeviceImpls<LocalAggregationBackwardChannelsLastOp>::get().find(
          input.device().type()) != nullptr;
  at::Tensor grad_input =
      need_input_grad
          ? at::empty(input.sizes(),
                      input.options().memory_format(
                          channels_last_kernels
                              ? format
                              : at::MemoryFormat::Contiguous))
          : at::Tensor();
  at::Tensor grad_weight =
      !need_weight_grad        ? at::Tensor()
      : channels_last_kernels ? empty_pixel_major(weight.sym_sizes(),
                                                  weight.options())
                              : at::empty(weight.sizes(), weight.options());
  if ((need_input_grad || need_weight_grad) && input.numel() > 0 &&
      weight.numel() > 0) {
    if (channels_last_kernels) {
      dispatch_device_impl<LocalAggregationBackwardChannelsLastOp>(
          input, grad_output.contiguous(format), input.contiguous(format),
          pixel_major(weight), grad_input, grad_weight, shape);
    } else {
      dispatch_device_impl<LocalAggregationBackwardOp>(
          input, grad_output.contiguous(), input.contiguous(),
          weight.contiguous(), grad_input, grad_weight, shape);
    }
  } else {
    if (grad_input.defined()) grad_input.zero_();
    if (grad_weight.defined()) grad_weight.zero_();
  }
  if (grad_input.defined()) grad_input = grad_input.contiguous(format);
  if (grad_weight.defined()) {
    grad_weight = is_pixel_major(weight) ? pixel_major(grad_weight)
                                         : grad_weight.contiguous();
  }
  return {grad_input, grad_weight};
}

}  // namespace mmcot
