// The operators of mmcot._ext, registered with the PyTorch dispatcher
// (torch.ops.mmcot.*): CPU and CUDA kernels through the device-agnostic
// entry, shape-only Meta kernels (what FakeTensor, torch.compile and
// torch.export trace with), and autograd through the fused backward
// operator. Importing the module registers them; the Python module itself
// only says whether the CUDA kernels are built.
#include <torch/extension.h>

#include <tuple>
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

namespace {

using Window = c10::IntArrayRef;

at::Tensor forward_kernel(const at::Tensor& input, const at::Tensor& weight,
                          Window kernel_size, Window stride, Window padding,
                          Window dilation) {
  return local_aggregation_forward(input.contiguous(), weight.contiguous(),
                                   kernel_size.vec(), stride.vec(),
                                   padding.vec(), dilation.vec());
}

// An unneeded gradient is an empty tensor: an operator returns tensors.
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, Window kernel_size, Window stride,
    Window padding, Window dilation, bool need_input, bool need_weight) {
  auto grads = local_aggregation_backward(
      grad_output.contiguous(), input.contiguous(), weight.contiguous(),
      kernel_size.vec(), stride.vec(), padding.vec(), dilation.vec(),
      need_input, need_weight);
  return {need_input ? grads[0] : input.new_empty({0}),
          need_weight ? grads[1] : weight.new_empty({0})};
}

at::Tensor forward_meta(const at::Tensor& input, const at::Tensor& weight,
                        Window, Window, Window, Window) {
  return at::empty_symint({input.sym_size(0),
                           weight.sym_size(1) * input.sym_size(1),
                           weight.sym_size(4), weight.sym_size(5)},
                          input.options());
}

std::tuple<at::Tensor, at::Tensor> backward_meta(
    const at::Tensor&, const at::Tensor& input, const at::Tensor& weight,
    Window, Window, Window, Window, bool need_input, bool need_weight) {
  return {need_input ? at::empty_like(input) : input.new_empty({0}),
          need_weight ? at::empty_like(weight) : weight.new_empty({0})};
}

at::Tensor call_forward(const at::Tensor& input, const at::Tensor& weight,
                        Window kernel_size, Window stride, Window padding,
                        Window dilation) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mmcot::local_aggregation", "")
                       .typed<decltype(forward_kernel)>();
  return op.call(input, weight, kernel_size, stride, padding, dilation);
}

std::tuple<at::Tensor, at::Tensor> call_backward(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, Window kernel_size, Window stride,
    Window padding, Window dilation, bool need_input, bool need_weight) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mmcot::local_aggregation_backward", "")
          .typed<decltype(backward_kernel)>();
  return op.call(grad_output, input, weight, kernel_size, stride, padding,
                 dilation, need_input, need_weight);
}

class LocalAggregationFunction
    : public torch::autograd::Function<LocalAggregationFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx,
                            const at::Tensor& input, const at::Tensor& weight,
                            Window kernel_size, Window stride, Window padding,
                            Window dilation) {
    ctx->save_for_backward({input, weight});
    std::vector<int64_t> window = kernel_size.vec();
    for (Window part : {stride, padding, dilation}) {
      window.insert(window.end(), part.begin(), part.end());
    }
    ctx->saved_data["window"] = window;
    at::AutoDispatchBelowADInplaceOrView guard;
    return call_forward(input, weight, kernel_size, stride, padding,
                        dilation);
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto window = ctx->saved_data["window"].toIntVector();
    const Window w(window);
    const bool need_input = ctx->needs_input_grad(0);
    const bool need_weight = ctx->needs_input_grad(1);
    auto [grad_input, grad_weight] = call_backward(
        grad_outputs[0], saved[0], saved[1], w.slice(0, 2), w.slice(2, 2),
        w.slice(4, 2), w.slice(6, 2), need_input, need_weight);
    return {need_input ? grad_input : at::Tensor(),
            need_weight ? grad_weight : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor forward_autograd(const at::Tensor& input, const at::Tensor& weight,
                            Window kernel_size, Window stride, Window padding,
                            Window dilation) {
  return LocalAggregationFunction::apply(input, weight, kernel_size, stride,
                                         padding, dilation);
}

}  // namespace
}  // namespace mmcot

TORCH_LIBRARY(mmcot, m) {
  m.def(
      "local_aggregation(Tensor input, Tensor weight, int[] kernel_size, "
      "int[] stride, int[] padding, int[] dilation) -> Tensor");
  m.def(
      "local_aggregation_backward(Tensor grad_output, Tensor input, "
      "Tensor weight, int[] kernel_size, int[] stride, int[] padding, "
      "int[] dilation, bool need_input, bool need_weight) "
      "-> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmcot, CPU, m) {
  m.impl("local_aggregation", &mmcot::forward_kernel);
  m.impl("local_aggregation_backward", &mmcot::backward_kernel);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmcot, CUDA, m) {
  m.impl("local_aggregation", &mmcot::forward_kernel);
  m.impl("local_aggregation_backward", &mmcot::backward_kernel);
}
#endif

TORCH_LIBRARY_IMPL(mmcot, Meta, m) {
  m.impl("local_aggregation", &mmcot::forward_meta);
  m.impl("local_aggregation_backward", &mmcot::backward_meta);
}

TORCH_LIBRARY_IMPL(mmcot, Autograd, m) {
  m.impl("local_aggregation", &mmcot::forward_autograd);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
