// CUDA launchers of the local aggregation op: device guard, current stream,
// dtype dispatch (float, double, half, bfloat16), 32-bit indexing where the
// tensors allow it, the unit-stride backward, the strip kernels of
// benchmark builds (MMCOT_CUDA_STRIP_PIXELS > 1; vectors where the shape and
// the buffers' alignment allow), launch checks.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../../common/cuda/local_aggregation_cuda_kernel.cuh"
#include "../local_aggregation.h"

namespace mmcot {
namespace {

constexpr int kThreads = kThreadsPerBlock;
constexpr int64_t kMaxBlocks = 65535 * 8;

int64_t blocks_for(int64_t total) {
  return std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks);
}

// Whether every buffer lies at a multiple of `elements` elements of T.
template <typename T>
bool aligned_to(int elements, std::initializer_list<const void*> buffers) {
  for (const void* p : buffers) {
    if (reinterpret_cast<std::uintptr_t>(p) % (elements * sizeof(T))) {
      return false;
    }
  }
  return true;
}

// launch(std::bool_constant<vectors>) for the strip kernels: vectors where
// the shape fits them and every buffer is aligned to kStripPixels elements.
template <typename T, typename Launch>
void launch_strip_layout(const LocalAggregationShape& shape,
                         std::initializer_list<const void*> buffers,
                         Launch launch) {
  if (strip_vectors_fit(shape, kStripPixels) &&
      aligned_to<T>(kStripPixels, buffers)) {
    launch(std::true_type());
  } else {
    launch(std::false_type());
  }
}

// Whether 32-bit indices cover the tensors, the work items and the grid.
bool fits_int32(int64_t total, std::initializer_list<int64_t> numels) {
  int64_t largest = total + blocks_for(total) * kThreads;
  for (int64_t numel : numels) largest = std::max(largest, numel);
  return largest <= std::numeric_limits<int32_t>::max();
}

void local_aggregation_forward_cuda(const at::Tensor& input,
                                    const at::Tensor& weight,
                                    at::Tensor& output,
                                    const LocalAggregationShape& shape) {
  const at::cuda::CUDAGuard guard(input.device());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t total =
      shape.batch * shape.heads * shape.groups * shape.out_plane();
  const int64_t strips = shape.batch * shape.heads * shape.groups *
                         shape.out_height *
                         ((shape.out_width + kStripPixels - 1) / kStripPixels);
  const bool small = fits_int32(std::max(total, strips),
                                {input.numel(), weight.numel(),
                                 output.numel()});
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "local_aggregation_forward_cuda", [&] {
        const auto launch = [&](auto index) {
          using index_t = decltype(index);
          if constexpr (kStripPixels > 1) {
            if (strip_kernels_apply(shape)) {
              const auto launch_strips = [&](auto aligned) {
                local_aggregation_forward_strip_cuda_kernel<
                    kStripPixels, decltype(aligned)::value, scalar_t, index_t>
                    <<<blocks_for(strips), kThreads, 0, stream>>>(
                        static_cast<index_t>(strips),
                        input.const_data_ptr<scalar_t>(),
                        weight.const_data_ptr<scalar_t>(),
                        output.mutable_data_ptr<scalar_t>(), shape);
              };
              launch_strip_layout<scalar_t>(
                  shape,
                  {input.const_data_ptr(), weight.const_data_ptr(),
                   output.const_data_ptr()},
                  launch_strips);
              return;
            }
          }
          local_aggregation_forward_cuda_kernel<scalar_t, index_t>
              <<<blocks_for(total), kThreads, 0, stream>>>(
                  static_cast<index_t>(total),
                  input.const_data_ptr<scalar_t>(),
                  weight.const_data_ptr<scalar_t>(),
                  output.mutable_data_ptr<scalar_t>(), shape);
        };
        small ? launch(int32_t()) : launch(int64_t());
      });
  AT_CUDA_CHECK(cudaGetLastError());
}

void local_aggregation_backward_cuda(const at::Tensor& grad_output,
                                     const at::Tensor& input,
                                     const at::Tensor& weight,
                                     at::Tensor& grad_input,
                                     at::Tensor& grad_weight,
                                     const LocalAggregationShape& shape) {
  const at::cuda::CUDAGuard guard(input.device());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t total = shape.batch * shape.groups *
                        std::max(shape.in_plane(), shape.out_plane());
  const int64_t strips =
      shape.batch * shape.groups * std::max(shape.height, shape.out_height) *
      ((std::max(shape.width, shape.out_width) + kStripPixels - 1) /
       kStripPixels);
  const bool small =
      fits_int32(std::max(total, strips),
                 {grad_output.numel(), input.numel(), weight.numel()});
  const bool unit_stride = shape.stride_h == 1 && shape.stride_w == 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "local_aggregation_backward_cuda", [&] {
        scalar_t* gx = grad_input.defined()
                           ? grad_input.mutable_data_ptr<scalar_t>()
                           : nullptr;
        scalar_t* gw = grad_weight.defined()
                           ? grad_weight.mutable_data_ptr<scalar_t>()
                           : nullptr;
        const auto launch = [&](auto unit, auto index) {
          using index_t = decltype(index);
          if constexpr (kStripPixels > 1) {
            if (strip_kernels_apply(shape)) {
              const auto launch_strips = [&](auto aligned) {
                local_aggregation_backward_strip_cuda_kernel<
                    kStripPixels, decltype(aligned)::value, scalar_t, index_t>
                    <<<blocks_for(strips), kThreads, 0, stream>>>(
                        static_cast<index_t>(strips),
                        grad_output.const_data_ptr<scalar_t>(),
                        input.const_data_ptr<scalar_t>(),
                        weight.const_data_ptr<scalar_t>(), gx, gw, shape);
              };
              launch_strip_layout<scalar_t>(
                  shape,
                  {grad_output.const_data_ptr(), input.const_data_ptr(),
                   weight.const_data_ptr(), gx, gw},
                  launch_strips);
              return;
            }
          }
          local_aggregation_backward_cuda_kernel<decltype(unit)::value,
                                                 scalar_t, index_t>
              <<<blocks_for(total), kThreads, 0, stream>>>(
                  static_cast<index_t>(total),
                  grad_output.const_data_ptr<scalar_t>(),
                  input.const_data_ptr<scalar_t>(),
                  weight.const_data_ptr<scalar_t>(), gx, gw, shape);
        };
        if (unit_stride) {
          small ? launch(std::true_type(), int32_t())
                : launch(std::true_type(), int64_t());
        } else {
          small ? launch(std::false_type(), int32_t())
                : launch(std::false_type(), int64_t());
        }
      });
  AT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CUDA,
                           local_aggregation_forward_cuda);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardOp, CUDA,
                           local_aggregation_backward_cuda);

}  // namespace mmcot
