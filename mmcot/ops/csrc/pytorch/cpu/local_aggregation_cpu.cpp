// CPU entry of the local aggregation op: the kernels of
// local_aggregation_cpu_kernels.h for the instruction set ATen's CPU
// capability allows (this file compiles the base set, for any CPU;
// local_aggregation_cpu_avx2.cpp the AVX2 one).
#include <ATen/Version.h>

#include <string>

#include "../local_aggregation.h"

#define MMCOT_CPU_ISA base
#include "local_aggregation_cpu_kernels.h"

namespace mmcot {
namespace cpu {

namespace {

enum class KernelIsa { kBase, kAvx2 };

KernelIsa chosen_isa() {
  static const KernelIsa isa = [] {
#ifdef MMCOT_CPU_X86_KERNELS
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX2" || capability == "AVX512") return KernelIsa::kAvx2;
#endif
    return KernelIsa::kBase;
  }();
  return isa;
}

// The kernels of chosen_isa() for one element type.
template <typename T>
struct Kernels {
  decltype(&base::forward<T>) forward;
  decltype(&base::forward_group_normed<T>) forward_group_normed;
  decltype(&base::forward_group_normed_channels_last<T>)
      forward_group_normed_channels_last;
  decltype(&base::forward_channels_last<T>) forward_channels_last;
  decltype(&base::backward<T>) backward;
  decltype(&base::backward_channels_last<T>) backward_channels_last;
};

template <typename T>
const Kernels<T>& kernels() {
  static const Kernels<T> chosen = [] {
#ifdef MMCOT_CPU_X86_KERNELS
    if (chosen_isa() == KernelIsa::kAvx2)
      return Kernels<T>{&avx2::forward<T>, &avx2::forward_group_normed<T>,
                        &avx2::forward_group_normed_channels_last<T>,
                        &avx2::forward_channels_last<T>, &avx2::backward<T>,
                        &avx2::backward_channels_last<T>};
#endif
    return Kernels<T>{&base::forward<T>, &base::forward_group_normed<T>,
                      &base::forward_group_normed_channels_last<T>,
                      &base::forward_channels_last<T>, &base::backward<T>,
                      &base::backward_channels_last<T>};
  }();
  return chosen;
}

}  // namespace

const char* cpu_kernel_isa() {
  return chosen_isa() == KernelIsa::kAvx2 ? "avx2" : "default";
}

namespace {

void local_aggregation_forward_cpu(const at::Tensor& input,
                                   const at::Tensor& weight,
                                   at::Tensor& output,
                                   const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "local_aggregation_cpu", [&] {
    kernels<scalar_t>().forward(shape, input.const_data_ptr<scalar_t>(),
                                weight.const_data_ptr<scalar_t>(),
                                output.mutable_data_ptr<scalar_t>());
  });
}

// gn_weight and gn_bias contiguous; input, weight and output contiguous
// or, with channels_last, in the layouts of forward_channels_last
// (local_aggregation.h's LocalAggregationGroupNormedForwardOp).
void local_aggregation_group_normed_forward_cpu(
    const at::Tensor& input, const at::Tensor& weight,
    const at::Tensor& gn_weight, const at::Tensor& gn_bias, double eps,
    bool channels_last, at::Tensor& output,
    const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(
      input.scalar_type(), "local_aggregation_group_normed_cpu", [&] {
        const GroupNormAffine<scalar_t> affine{
            gn_weight.const_data_ptr<scalar_t>(),
            gn_bias.const_data_ptr<scalar_t>(), gn_weight.size(0), eps};
        const auto& run = channels_last
                              ? kernels<scalar_t>()
                                    .forward_group_normed_channels_last
                              : kernels<scalar_t>().forward_group_normed;
        run(shape, input.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(), affine,
            output.mutable_data_ptr<scalar_t>());
      });
}

// input channels-last, weight pixel-major, output channels-last (the
// layouts of local_aggregation_cpu.h's forward_channels_last).
void local_aggregation_forward_channels_last_cpu(
    const at::Tensor& input, const at::Tensor& weight, at::Tensor& output,
    const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(
      input.scalar_type(), "local_aggregation_channels_last_cpu", [&] {
        kernels<scalar_t>().forward_channels_last(
            shape, input.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(),
            output.mutable_data_ptr<scalar_t>());
      });
}

// The backward on contiguous tensors or, with kChannelsLast, on the
// layouts of local_aggregation_cpu.h's backward_channels_last
// (grad_output, input and grad_input channels-last, weight and grad_weight
// pixel-major).
template <bool kChannelsLast>
void local_aggregation_backward_cpu(const at::Tensor& grad_output,
                                    const at::Tensor& input,
                                    const at::Tensor& weight,
                                    at::Tensor& grad_input,
                                    at::Tensor& grad_weight,
                                    const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(
      input.scalar_type(), "local_aggregation_backward_cpu", [&] {
        scalar_t* gin = grad_input.defined()
                            ? grad_input.mutable_data_ptr<scalar_t>()
                            : nullptr;
        scalar_t* gw = grad_weight.defined()
                           ? grad_weight.mutable_data_ptr<scalar_t>()
                           : nullptr;
        const auto& run = kChannelsLast
                              ? kernels<scalar_t>().backward_channels_last
                              : kernels<scalar_t>().backward;
        run(shape, grad_output.const_data_ptr<scalar_t>(),
            input.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(), gin, gw);
      });
}

}  // namespace
}  // namespace cpu

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CPU,
                           cpu::local_aggregation_forward_cpu);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationGroupNormedForwardOp, CPU,
                           cpu::local_aggregation_group_normed_forward_cpu);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardChannelsLastOp, CPU,
                           cpu::local_aggregation_forward_channels_last_cpu);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardOp, CPU,
                           cpu::local_aggregation_backward_cpu<false>);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardChannelsLastOp, CPU,
                           cpu::local_aggregation_backward_cpu<true>);

}  // namespace mmcot
