// Shapes and index helpers of the local aggregation op, shared by the CPU
// and CUDA kernels. Free of torch types so the kernels compile on their own.
#ifndef MMCOT_LOCAL_AGGREGATION_SHAPE_H
#define MMCOT_LOCAL_AGGREGATION_SHAPE_H

#include <cstdint>

#if defined(__CUDACC__)
#define MMCOT_HOST_DEVICE __host__ __device__
#else
#define MMCOT_HOST_DEVICE
#endif

namespace mmcot {

// input  (batch, channels, height, width)
// weight (batch, heads, groups, kernel_h * kernel_w, out_height, out_width)
// output (batch, heads * channels, out_height, out_width)
// Channel c of the input is weighted by group c % groups.
struct LocalAggregationShape {
  int64_t batch, channels, height, width;
  int64_t heads, groups, out_height, out_width;
  int64_t kernel_h, kernel_w, stride_h, stride_w;
  int64_t pad_h, pad_w, dilation_h, dilation_w;

  MMCOT_HOST_DEVICE int64_t taps() const { return kernel_h * kernel_w; }
  MMCOT_HOST_DEVICE int64_t in_plane() const { return height * width; }
  MMCOT_HOST_DEVICE int64_t out_plane() const { return out_height * out_width; }

  MMCOT_HOST_DEVICE int64_t input_offset(int64_t n, int64_t c) const {
    return (n * channels + c) * in_plane();
  }
  MMCOT_HOST_DEVICE int64_t weight_offset(int64_t n, int64_t head, int64_t g,
                                          int64_t tap) const {
    return (((n * heads + head) * groups + g) * taps() + tap) * out_plane();
  }
  MMCOT_HOST_DEVICE int64_t output_offset(int64_t n, int64_t head,
                                          int64_t c) const {
    return ((n * heads + head) * channels + c) * out_plane();
  }

  // From the input's 4 sizes, the weight's 6 and the (h, w) pairs of the
  // window, unchecked: the caller validates.
  static LocalAggregationShape from_sizes(const int64_t* input,
                                          const int64_t* weight,
                                          const int64_t* kernel,
                                          const int64_t* stride,
                                          const int64_t* padding,
                                          const int64_t* dilation) {
    return {input[0],   input[1],   input[2],    input[3],
            weight[1],  weight[2],  weight[4],   weight[5],
            kernel[0],  kernel[1],  stride[0],   stride[1],
            padding[0], padding[1], dilation[0], dilation[1]};
  }
};

// Output size along one dimension, floor division as in Python; <= 0 means
// an empty output (the Python and C++ checks share this rule).
MMCOT_HOST_DEVICE inline int64_t output_size(int64_t size, int64_t kernel,
                                             int64_t stride, int64_t padding,
                                             int64_t dilation) {
  const int64_t span = size + 2 * padding - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// First output index o >= 0 with o * stride + offset >= 0.
MMCOT_HOST_DEVICE inline int64_t first_inside(int64_t offset, int64_t stride) {
  return offset >= 0 ? 0 : (-offset + stride - 1) / stride;
}

// One past the last output index o < out_size with o * stride + offset < size.
MMCOT_HOST_DEVICE inline int64_t end_inside(int64_t offset, int64_t stride,
                                            int64_t size, int64_t out_size) {
  const int64_t last = size - 1 - offset;
  if (last < 0) return 0;
  const int64_t end = last / stride + 1;
  return end < out_size ? end : out_size;
}

}  // namespace mmcot

#endif  // MMCOT_LOCAL_AGGREGATION_SHAPE_H
