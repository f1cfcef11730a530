// Instantiates the local aggregation CUDA kernels for every supported dtype,
// so that tests can check with nvcc that they compile for each architecture
// without a GPU and without torch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/cuda/local_aggregation_cuda_kernel.cuh"

#define INSTANTIATE(T)                                                        \
  template __global__ void mmcot::local_aggregation_forward_cuda_kernel<T>(  \
      const int64_t, const T*, const T*, T*,                                  \
      const mmcot::LocalAggregationShape);                                    \
  template __global__ void                                                    \
  mmcot::local_aggregation_input_backward_cuda_kernel<T>(                     \
      const int64_t, const T*, const T*, T*,                                  \
      const mmcot::LocalAggregationShape);                                    \
  template __global__ void                                                    \
  mmcot::local_aggregation_weight_backward_cuda_kernel<T>(                    \
      const int64_t, const T*, const T*, T*,                                  \
      const mmcot::LocalAggregationShape);

INSTANTIATE(float)
INSTANTIATE(double)
INSTANTIATE(__half)
INSTANTIATE(__nv_bfloat16)
