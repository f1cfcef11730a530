// CUDA kernels of the local aggregation op, templated on the element type T
// (float, double, half, bfloat16) with accumulation in AccType<T>: float for
// the 16-bit types. No torch types: the launcher instantiates them.
//
// Every output value is written by exactly one thread and reduced in a fixed
// order: no atomics, deterministic results.
#ifndef MMCOT_LOCAL_AGGREGATION_CUDA_KERNEL_CUH
#define MMCOT_LOCAL_AGGREGATION_CUDA_KERNEL_CUH

#include "../local_aggregation_shape.h"

namespace mmcot {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

#define MMCOT_CUDA_1D_KERNEL_LOOP(i, n)                                   \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) +        \
                   threadIdx.x;                                            \
       i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// One thread per output element (n, head, c, y, x).
template <typename T>
__global__ void local_aggregation_forward_cuda_kernel(
    const int64_t total, const T* __restrict__ input,
    const T* __restrict__ weight, T* __restrict__ output,
    const LocalAggregationShape s) {
  using acc_t = typename AccType<T>::type;
  MMCOT_CUDA_1D_KERNEL_LOOP(index, total) {
    const int64_t x = index % s.out_width;
    const int64_t y = (index / s.out_width) % s.out_height;
    const int64_t c = (index / s.out_plane()) % s.channels;
    const int64_t head = (index / (s.out_plane() * s.channels)) % s.heads;
    const int64_t n = index / (s.out_plane() * s.channels * s.heads);
    const T* v = input + s.input_offset(n, c);
    const T* w = weight + s.weight_offset(n, head, c % s.groups, 0) +
                 y * s.out_width + x;
    acc_t value = 0;
    for (int64_t i = 0; i < s.kernel_h; ++i) {
      const int64_t y_in = y * s.stride_h - s.pad_h + i * s.dilation_h;
      if (y_in < 0 || y_in >= s.height) continue;
      for (int64_t j = 0; j < s.kernel_w; ++j) {
        const int64_t x_in = x * s.stride_w - s.pad_w + j * s.dilation_w;
        if (x_in < 0 || x_in >= s.width) continue;
        value += static_cast<acc_t>(w[(i * s.kernel_w + j) * s.out_plane()]) *
                 static_cast<acc_t>(v[y_in * s.width + x_in]);
      }
    }
    output[index] = static_cast<T>(value);
  }
}

// One thread per input element (n, c, y_in, x_in): gathers every output
// position whose window reads it, over all heads and taps.
template <typename T>
__global__ void local_aggregation_input_backward_cuda_kernel(
    const int64_t total, const T* __restrict__ grad_output,
    const T* __restrict__ weight, T* __restrict__ grad_input,
    const LocalAggregationShape s) {
  using acc_t = typename AccType<T>::type;
  MMCOT_CUDA_1D_KERNEL_LOOP(index, total) {
    const int64_t x_in = index % s.width;
    const int64_t y_in = (index / s.width) % s.height;
    const int64_t c = (index / s.in_plane()) % s.channels;
    const int64_t n = index / (s.in_plane() * s.channels);
    const int64_t g = c % s.groups;
    acc_t value = 0;
    for (int64_t head = 0; head < s.heads; ++head) {
      const T* gout = grad_output + s.output_offset(n, head, c);
      const T* w = weight + s.weight_offset(n, head, g, 0);
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        const int64_t y_s = y_in + s.pad_h - i * s.dilation_h;
        if (y_s < 0 || y_s % s.stride_h != 0) continue;
        const int64_t y = y_s / s.stride_h;
        if (y >= s.out_height) continue;
        for (int64_t j = 0; j < s.kernel_w; ++j) {
          const int64_t x_s = x_in + s.pad_w - j * s.dilation_w;
          if (x_s < 0 || x_s % s.stride_w != 0) continue;
          const int64_t x = x_s / s.stride_w;
          if (x >= s.out_width) continue;
          const int64_t pos = y * s.out_width + x;
          value +=
              static_cast<acc_t>(w[(i * s.kernel_w + j) * s.out_plane() + pos]) *
              static_cast<acc_t>(gout[pos]);
        }
      }
    }
    grad_input[index] = static_cast<T>(value);
  }
}

// One thread per weight element (n, head, g, tap, y, x): reduces over the
// C / G channels that share the weight group.
template <typename T>
__global__ void local_aggregation_weight_backward_cuda_kernel(
    const int64_t total, const T* __restrict__ grad_output,
    const T* __restrict__ input, T* __restrict__ grad_weight,
    const LocalAggregationShape s) {
  using acc_t = typename AccType<T>::type;
  MMCOT_CUDA_1D_KERNEL_LOOP(index, total) {
    const int64_t x = index % s.out_width;
    const int64_t y = (index / s.out_width) % s.out_height;
    const int64_t tap = (index / s.out_plane()) % s.taps();
    const int64_t g = (index / (s.out_plane() * s.taps())) % s.groups;
    const int64_t head =
        (index / (s.out_plane() * s.taps() * s.groups)) % s.heads;
    const int64_t n = index / (s.out_plane() * s.taps() * s.groups * s.heads);
    const int64_t y_in =
        y * s.stride_h - s.pad_h + (tap / s.kernel_w) * s.dilation_h;
    const int64_t x_in =
        x * s.stride_w - s.pad_w + (tap % s.kernel_w) * s.dilation_w;
    acc_t value = 0;
    if (y_in >= 0 && y_in < s.height && x_in >= 0 && x_in < s.width) {
      for (int64_t c = g; c < s.channels; c += s.groups) {
        value += static_cast<acc_t>(grad_output[s.output_offset(n, head, c) +
                                                y * s.out_width + x]) *
                 static_cast<acc_t>(
                     input[s.input_offset(n, c) + y_in * s.width + x_in]);
      }
    }
    grad_weight[index] = static_cast<T>(value);
  }
}

}  // namespace mmcot

#endif  // MMCOT_LOCAL_AGGREGATION_CUDA_KERNEL_CUH
