// Runs mmcot's CUDA kernels on a CPU: the CUDA qualifiers are defined away,
// the built-ins threadIdx / blockIdx / blockDim / gridDim become globals,
// and a launch runs every (block, thread) of the grid in turn. The kernels
// share no memory between threads and never synchronise, so running the
// threads one after another computes what the GPU computes. Built by
// test_cuda_kernels_on_cpu.py with torch.utils.cpp_extension.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)

struct SimDim3 {
  unsigned int x = 1, y = 1, z = 1;
};
static SimDim3 threadIdx, blockIdx, blockDim, gridDim;

#include "common/cuda/local_aggregation_cuda_kernel.cuh"

namespace {

using mmcot::LocalAggregationShape;

template <typename Kernel>
void launch(int64_t total, int64_t threads, int64_t max_blocks,
            Kernel kernel) {
  const int64_t blocks =
      std::max<int64_t>(1, std::min((total + threads - 1) / threads,
                                    max_blocks));
  gridDim.x = static_cast<unsigned int>(blocks);
  blockDim.x = static_cast<unsigned int>(threads);
  for (int64_t b = 0; b < blocks; ++b) {
    blockIdx.x = static_cast<unsigned int>(b);
    for (int64_t t = 0; t < threads; ++t) {
      threadIdx.x = static_cast<unsigned int>(t);
      kernel();
    }
  }
}

LocalAggregationShape make_shape(const at::Tensor& input,
                                 const at::Tensor& weight,
                                 std::vector<int64_t> kernel,
                                 std::vector<int64_t> stride,
                                 std::vector<int64_t> padding,
                                 std::vector<int64_t> dilation) {
  return LocalAggregationShape::from_sizes(
      input.sizes().data(), weight.sizes().data(), kernel.data(),
      stride.data(), padding.data(), dilation.data());
}

// The output of the forward kernel, run with `threads` per block and at
// most `max_blocks` blocks (fewer blocks than work: the grid-stride loop
// runs), indexed with 32 or 64 bits.
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight,
                   std::vector<int64_t> kernel, std::vector<int64_t> stride,
                   std::vector<int64_t> padding, std::vector<int64_t> dilation,
                   int64_t threads, int64_t max_blocks, bool index64) {
  const auto s = make_shape(input, weight, kernel, stride, padding, dilation);
  auto output = at::full({s.batch, s.heads * s.channels, s.out_height,
                          s.out_width},
                         std::nan(""), input.options());
  const int64_t total = s.batch * s.heads * s.groups * s.out_plane();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "forward", [&] {
        const auto* x = input.const_data_ptr<scalar_t>();
        const auto* w = weight.const_data_ptr<scalar_t>();
        auto* y = output.mutable_data_ptr<scalar_t>();
        if (index64) {
          launch(total, threads, max_blocks, [&] {
            mmcot::local_aggregation_forward_cuda_kernel<scalar_t, int64_t>(
                total, x, w, y, s);
          });
        } else {
          launch(total, threads, max_blocks, [&] {
            mmcot::local_aggregation_forward_cuda_kernel<scalar_t, int32_t>(
                static_cast<int32_t>(total), x, w, y, s);
          });
        }
      });
  return output;
}

// The input and weight gradients of the fused backward kernel (an undefined
// tensor where not asked for); unit_stride picks the unit-stride variant.
std::vector<at::Tensor> backward(const at::Tensor& grad_output,
                                 const at::Tensor& input,
                                 const at::Tensor& weight,
                                 std::vector<int64_t> kernel,
                                 std::vector<int64_t> stride,
                                 std::vector<int64_t> padding,
                                 std::vector<int64_t> dilation,
                                 bool need_input, bool need_weight,
                                 int64_t threads, int64_t max_blocks,
                                 bool index64, bool unit_stride) {
  const auto s = make_shape(input, weight, kernel, stride, padding, dilation);
  at::Tensor grad_input =
      need_input ? at::full_like(input, std::nan("")) : at::Tensor();
  at::Tensor grad_weight =
      need_weight ? at::full_like(weight, std::nan("")) : at::Tensor();
  const int64_t total =
      s.batch * s.groups * std::max(s.in_plane(), s.out_plane());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "backward", [&] {
        const auto* gy = grad_output.const_data_ptr<scalar_t>();
        const auto* x = input.const_data_ptr<scalar_t>();
        const auto* w = weight.const_data_ptr<scalar_t>();
        auto* gx = need_input ? grad_input.mutable_data_ptr<scalar_t>()
                              : nullptr;
        auto* gw = need_weight ? grad_weight.mutable_data_ptr<scalar_t>()
                               : nullptr;
        const auto run = [&](auto unit, auto index) {
          using index_t = decltype(index);
          launch(total, threads, max_blocks, [&] {
            mmcot::local_aggregation_backward_cuda_kernel<
                decltype(unit)::value, scalar_t, index_t>(
                static_cast<index_t>(total), gy, x, w, gx, gw, s);
          });
        };
        if (unit_stride) {
          index64 ? run(std::true_type(), int64_t())
                  : run(std::true_type(), int32_t());
        } else {
          index64 ? run(std::false_type(), int64_t())
                  : run(std::false_type(), int32_t());
        }
      });
  return {grad_input, grad_weight};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward);
  m.def("backward", &backward);
}
