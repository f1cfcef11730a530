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
#include <type_traits>

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

void check_strip(const LocalAggregationShape& s, int64_t pixels,
                 bool aligned) {
  TORCH_CHECK(mmcot::strip_kernels_apply(s),
              "the strip kernels take 3 x 3 windows at unit stride and "
              "dilation");
  TORCH_CHECK(pixels == 1 || pixels == 2 || pixels == 4,
              "pixels must be 1, 2 or 4");
  TORCH_CHECK(!aligned || mmcot::strip_vectors_fit(s, pixels),
              "vector strips need padding 1 across and a width divisible by "
              "the pixels");
}

// run(std::integral_constant<int, pixels>, std::bool_constant<aligned>,
//     index type value)
template <typename Run>
void with_strip_kernel(int64_t pixels, bool aligned, bool index64, Run run) {
  const auto with_index = [&](auto width, auto vectors) {
    index64 ? run(width, vectors, int64_t()) : run(width, vectors, int32_t());
  };
  const auto with_vectors = [&](auto width) {
    aligned ? with_index(width, std::true_type())
            : with_index(width, std::false_type());
  };
  if (pixels == 1) {
    with_vectors(std::integral_constant<int, 1>());
  } else if (pixels == 2) {
    with_vectors(std::integral_constant<int, 2>());
  } else {
    with_vectors(std::integral_constant<int, 4>());
  }
}

// The output of the 3 x 3 strip forward kernel with `pixels` (1, 2 or 4)
// output pixels per thread, moved as vectors where `aligned`, launched as
// forward().
at::Tensor forward_strip(const at::Tensor& input, const at::Tensor& weight,
                         std::vector<int64_t> kernel,
                         std::vector<int64_t> stride,
                         std::vector<int64_t> padding,
                         std::vector<int64_t> dilation, int64_t pixels,
                         bool aligned, int64_t threads, int64_t max_blocks,
                         bool index64) {
  const auto s = make_shape(input, weight, kernel, stride, padding, dilation);
  check_strip(s, pixels, aligned);
  auto output = at::full({s.batch, s.heads * s.channels, s.out_height,
                          s.out_width},
                         std::nan(""), input.options());
  const int64_t total = s.batch * s.heads * s.groups * s.out_height *
                        ((s.out_width + pixels - 1) / pixels);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "forward_strip", [&] {
        const auto* x = input.const_data_ptr<scalar_t>();
        const auto* w = weight.const_data_ptr<scalar_t>();
        auto* y = output.mutable_data_ptr<scalar_t>();
        with_strip_kernel(
            pixels, aligned, index64, [&](auto width, auto vectors,
                                          auto index) {
              using index_t = decltype(index);
              launch(total, threads, max_blocks, [&] {
                mmcot::local_aggregation_forward_strip_cuda_kernel<
                    decltype(width)::value, decltype(vectors)::value,
                    scalar_t, index_t>(static_cast<index_t>(total), x, w, y,
                                       s);
              });
            });
      });
  return output;
}

// The input and weight gradients a backward kernel writes (NaN before it
// runs; an undefined tensor where not asked for): run(gy, x, w, gx, gw)
// launches it on the typed buffers, gx / gw null where not asked for.
template <typename Run>
std::vector<at::Tensor> backward_gradients(const at::Tensor& grad_output,
                                           const at::Tensor& input,
                                           const at::Tensor& weight,
                                           bool need_input, bool need_weight,
                                           Run run) {
  at::Tensor grad_input =
      need_input ? at::full_like(input, std::nan("")) : at::Tensor();
  at::Tensor grad_weight =
      need_weight ? at::full_like(weight, std::nan("")) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "backward", [&] {
        run(grad_output.const_data_ptr<scalar_t>(),
            input.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(),
            need_input ? grad_input.mutable_data_ptr<scalar_t>() : nullptr,
            need_weight ? grad_weight.mutable_data_ptr<scalar_t>() : nullptr);
      });
  return {grad_input, grad_weight};
}

// The input and weight gradients of the 3 x 3 strip backward kernel with
// `pixels` (1, 2 or 4) pixels per thread, moved as vectors where `aligned`
// (an undefined tensor where not asked for), launched as backward().
std::vector<at::Tensor> backward_strip(
    const at::Tensor& grad_output, const at::Tensor& input,
    const at::Tensor& weight, std::vector<int64_t> kernel,
    std::vector<int64_t> stride, std::vector<int64_t> padding,
    std::vector<int64_t> dilation, bool need_input, bool need_weight,
    int64_t pixels, bool aligned, int64_t threads, int64_t max_blocks,
    bool index64) {
  const auto s = make_shape(input, weight, kernel, stride, padding, dilation);
  check_strip(s, pixels, aligned);
  const int64_t total = s.batch * s.groups *
                        std::max(s.height, s.out_height) *
                        ((std::max(s.width, s.out_width) + pixels - 1) /
                         pixels);
  return backward_gradients(
      grad_output, input, weight, need_input, need_weight,
      [&](const auto* gy, const auto* x, const auto* w, auto* gx, auto* gw) {
        using scalar_t = std::remove_pointer_t<decltype(gx)>;
        with_strip_kernel(
            pixels, aligned, index64, [&](auto width, auto vectors,
                                          auto index) {
              using index_t = decltype(index);
              launch(total, threads, max_blocks, [&] {
                mmcot::local_aggregation_backward_strip_cuda_kernel<
                    decltype(width)::value, decltype(vectors)::value,
                    scalar_t, index_t>(static_cast<index_t>(total), gy, x, w,
                                       gx, gw, s);
              });
            });
      });
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
  const int64_t total =
      s.batch * s.groups * std::max(s.in_plane(), s.out_plane());
  return backward_gradients(
      grad_output, input, weight, need_input, need_weight,
      [&](const auto* gy, const auto* x, const auto* w, auto* gx, auto* gw) {
        using scalar_t = std::remove_pointer_t<decltype(gx)>;
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
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward);
  m.def("forward_strip", &forward_strip);
  m.def("backward_strip", &backward_strip);
  m.def("backward", &backward);
}
