// The operators of mmcot._ext, registered with the PyTorch dispatcher
// (torch.ops.mmcot.*): CPU and CUDA kernels through the device-agnostic
// entry, shape-only Meta kernels (what FakeTensor, torch.compile and
// torch.export trace with), and autograd through the fused backward
// operator, itself differentiable (double backward, gradgradcheck).
// Importing the module registers them; the Python module itself only says
// whether the CUDA kernels are built and which CPU kernels run.
#include <torch/extension.h>

#include <tuple>
#include <vector>

#include "cpu/local_aggregation_cpu.h"
#include "local_aggregation.h"

namespace mmcot {
namespace {

using Window = c10::IntArrayRef;

at::Tensor forward_kernel(const at::Tensor& input, const at::Tensor& weight,
                          Window kernel_size, Window stride, Window padding,
                          Window dilation) {
  return local_aggregation_forward(input, weight, kernel_size.vec(),
                                   stride.vec(), padding.vec(),
                                   dilation.vec());
}

at::Tensor group_normed_kernel(const at::Tensor& input,
                               const at::Tensor& weight,
                               const at::Tensor& gn_weight,
                               const at::Tensor& gn_bias, double eps,
                               Window kernel_size, Window stride,
                               Window padding, Window dilation) {
  return local_aggregation_group_normed_forward(
      input, weight, gn_weight, gn_bias, eps, kernel_size.vec(),
      stride.vec(), padding.vec(), dilation.vec());
}

// An unneeded gradient is an empty tensor: an operator returns tensors.
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, Window kernel_size, Window stride,
    Window padding, Window dilation, bool need_input, bool need_weight) {
  auto grads = local_aggregation_backward(
      grad_output, input, weight, kernel_size.vec(), stride.vec(),
      padding.vec(), dilation.vec(), need_input, need_weight);
  return {need_input ? grads[0] : input.new_empty({0}),
          need_weight ? grads[1] : weight.new_empty({0})};
}

// Shapes and memory formats as local_aggregation.h's entry points give them.
at::Tensor forward_meta(const at::Tensor& input, const at::Tensor& weight,
                        Window, Window, Window, Window) {
  return at::empty_symint(
      {input.sym_size(0), weight.sym_size(1) * input.sym_size(1),
       weight.sym_size(4), weight.sym_size(5)},
      input.options().memory_format(result_memory_format(input)));
}

at::Tensor group_normed_meta(const at::Tensor& input,
                             const at::Tensor& weight, const at::Tensor&,
                             const at::Tensor&, double, Window, Window,
                             Window, Window) {
  return forward_meta(input, weight, {}, {}, {}, {});
}

std::tuple<at::Tensor, at::Tensor> backward_meta(
    const at::Tensor&, const at::Tensor& input, const at::Tensor& weight,
    Window, Window, Window, Window, bool need_input, bool need_weight) {
  const auto input_options =
      input.options().memory_format(result_memory_format(input));
  at::Tensor grad_weight =
      !need_weight ? weight.new_empty({0})
      : is_pixel_major(weight)
          ? empty_pixel_major(weight.sym_sizes(), weight.options())
          : at::empty_symint(weight.sym_sizes(), weight.options());
  return {need_input ? at::empty_symint(input.sym_sizes(), input_options)
                     : input.new_empty({0}),
          grad_weight};
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

// The backward is bilinear: grad_input = B_x(grad_output, weight) and
// grad_weight = B_w(grad_output, input), each the adjoint of the forward in
// one argument. Its own gradients are therefore forwards and backwards
// again, called through the dispatcher so that they are differentiable too.
class LocalAggregationBackwardFunction
    : public torch::autograd::Function<LocalAggregationBackwardFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const at::Tensor& grad_output,
      const at::Tensor& input, const at::Tensor& weight, Window kernel_size,
      Window stride, Window padding, Window dilation, bool need_input,
      bool need_weight) {
    ctx->save_for_backward({grad_output, input, weight});
    std::vector<int64_t> window = kernel_size.vec();
    for (Window part : {stride, padding, dilation}) {
      window.insert(window.end(), part.begin(), part.end());
    }
    ctx->saved_data["window"] = window;
    ctx->saved_data["need_input"] = need_input;
    ctx->saved_data["need_weight"] = need_weight;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [grad_input, grad_weight] =
        call_backward(grad_output, input, weight, kernel_size, stride,
                      padding, dilation, need_input, need_weight);
    return {grad_input, grad_weight};
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &grad_output = saved[0], &input = saved[1],
                     &weight = saved[2];
    const auto window = ctx->saved_data["window"].toIntVector();
    const Window w(window);
    const Window k = w.slice(0, 2), s = w.slice(2, 2), p = w.slice(4, 2),
                 d = w.slice(6, 2);
    // gradients of grad_input and grad_weight; an unneeded one is empty
    const at::Tensor& gg_input = grads[0];
    const at::Tensor& gg_weight = grads[1];
    const bool with_gg_input = ctx->saved_data["need_input"].toBool() &&
                               gg_input.defined() && gg_input.numel() > 0;
    const bool with_gg_weight = ctx->saved_data["need_weight"].toBool() &&
                                gg_weight.defined() && gg_weight.numel() > 0;
    at::Tensor d_grad_output, d_input, d_weight;
    if (ctx->needs_input_grad(0)) {
      if (with_gg_input) {
        d_grad_output = call_forward(gg_input, weight, k, s, p, d);
      }
      if (with_gg_weight) {
        auto part = call_forward(input, gg_weight, k, s, p, d);
        d_grad_output =
            d_grad_output.defined() ? d_grad_output + part : part;
      }
    }
    if (ctx->needs_input_grad(1) && with_gg_weight) {
      d_input = std::get<0>(call_backward(grad_output, input, gg_weight, k,
                                          s, p, d, true, false));
    }
    if (ctx->needs_input_grad(2) && with_gg_input) {
      d_weight = std::get<1>(call_backward(grad_output, gg_input, weight, k,
                                           s, p, d, false, true));
    }
    return {d_grad_output, d_input,      d_weight,     at::Tensor(),
            at::Tensor(),  at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, Window kernel_size, Window stride,
    Window padding, Window dilation, bool need_input, bool need_weight) {
  auto grads = LocalAggregationBackwardFunction::apply(
      grad_output, input, weight, kernel_size, stride, padding, dilation,
      need_input, need_weight);
  return {grads[0], grads[1]};
}

at::Tensor forward_autograd(const at::Tensor& input, const at::Tensor& weight,
                            Window kernel_size, Window stride, Window padding,
                            Window dilation) {
  return LocalAggregationFunction::apply(input, weight, kernel_size, stride,
                                         padding, dilation);
}

// The group-normed forward is for inference: it has no gradient (the Python
// function differentiates through GroupNorm and the op instead).
at::Tensor group_normed_autograd(const at::Tensor& input,
                                 const at::Tensor& weight,
                                 const at::Tensor& gn_weight,
                                 const at::Tensor& gn_bias, double eps,
                                 Window kernel_size, Window stride,
                                 Window padding, Window dilation) {
  TORCH_CHECK(!at::GradMode::is_enabled() ||
                  !(input.requires_grad() || weight.requires_grad() ||
                    gn_weight.requires_grad() || gn_bias.requires_grad()),
              "mmcot::local_aggregation_group_normed has no gradient; call "
              "mmcot.ops.local_aggregation_group_normed, which "
              "differentiates through GroupNorm and local_aggregation");
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("mmcot::local_aggregation_group_normed", "")
          .typed<decltype(group_normed_kernel)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(input, weight, gn_weight, gn_bias, eps, kernel_size, stride,
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
  // any strides: the kernels read contiguous and channels-last tensors
  // where they lie, so inductor need not convert a channels-last graph's
  m.def(
      "local_aggregation_group_normed(Tensor input, Tensor weight, "
      "Tensor gn_weight, Tensor gn_bias, float eps, int[] kernel_size, "
      "int[] stride, int[] padding, int[] dilation) -> Tensor",
      {at::Tag::flexible_layout});
}

TORCH_LIBRARY_IMPL(mmcot, CPU, m) {
  m.impl("local_aggregation", &mmcot::forward_kernel);
  m.impl("local_aggregation_group_normed", &mmcot::group_normed_kernel);
  m.impl("local_aggregation_backward", &mmcot::backward_kernel);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmcot, CUDA, m) {
  m.impl("local_aggregation", &mmcot::forward_kernel);
  m.impl("local_aggregation_group_normed", &mmcot::group_normed_kernel);
  m.impl("local_aggregation_backward", &mmcot::backward_kernel);
}
#endif

TORCH_LIBRARY_IMPL(mmcot, Meta, m) {
  m.impl("local_aggregation", &mmcot::forward_meta);
  m.impl("local_aggregation_group_normed", &mmcot::group_normed_meta);
  m.impl("local_aggregation_backward", &mmcot::backward_meta);
}

TORCH_LIBRARY_IMPL(mmcot, Autograd, m) {
  m.impl("local_aggregation", &mmcot::forward_autograd);
  m.impl("local_aggregation_group_normed", &mmcot::group_normed_autograd);
  m.impl("local_aggregation_backward", &mmcot::backward_autograd);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("cpu_kernels", &mmcot::cpu::cpu_kernel_isa,
        "The instruction set of the CPU kernels this process runs: avx2 or "
        "default (from ATen's CPU capability, ATEN_CPU_CAPABILITY).");
}
