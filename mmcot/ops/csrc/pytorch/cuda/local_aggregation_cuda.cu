// CUDA launchers of the local aggregation op: device guard, current stream,
// dtype dispatch (float, double, half, bfloat16), launch checks.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "../../common/cuda/local_aggregation_cuda_kernel.cuh"
#include "../local_aggregation.h"

namespace mmcot {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(blocks, 65535 * 8));
}

void local_aggregation_forward_cuda(const at::Tensor& input,
                                    const at::Tensor& weight,
                                    at::Tensor& output,
                                    const LocalAggregationShape& shape) {
  const at::cuda::CUDAGuard guard(input.device());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t total = output.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "local_aggregation_forward_cuda", [&] {
        local_aggregation_forward_cuda_kernel<scalar_t>
            <<<blocks_for(total), kThreads, 0, stream>>>(
                total, input.const_data_ptr<scalar_t>(),
                weight.const_data_ptr<scalar_t>(),
                output.mutable_data_ptr<scalar_t>(), shape);
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
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
      "local_aggregation_backward_cuda", [&] {
        if (grad_input.defined()) {
          const int64_t total = grad_input.numel();
          local_aggregation_input_backward_cuda_kernel<scalar_t>
              <<<blocks_for(total), kThreads, 0, stream>>>(
                  total, grad_output.const_data_ptr<scalar_t>(),
                  weight.const_data_ptr<scalar_t>(),
                  grad_input.mutable_data_ptr<scalar_t>(), shape);
          AT_CUDA_CHECK(cudaGetLastError());
        }
        if (grad_weight.defined()) {
          const int64_t total = grad_weight.numel();
          local_aggregation_weight_backward_cuda_kernel<scalar_t>
              <<<blocks_for(total), kThreads, 0, stream>>>(
                  total, grad_output.const_data_ptr<scalar_t>(),
                  input.const_data_ptr<scalar_t>(),
                  grad_weight.mutable_data_ptr<scalar_t>(), shape);
          AT_CUDA_CHECK(cudaGetLastError());
        }
      });
}

}  // namespace

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CUDA,
                           local_aggregation_forward_cuda);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardOp, CUDA,
                           local_aggregation_backward_cuda);

}  // namespace mmcot
