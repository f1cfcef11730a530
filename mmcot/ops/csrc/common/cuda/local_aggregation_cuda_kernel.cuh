// CUDA kernels of the local aggregation op.
//
// Templated on the element type T (float, double, c10::Half, c10::BFloat16:
// any type that converts to and from AccType<T>, float for the 16-bit
// types) and on the index type (int32_t when every tensor and the launch
// fit in 2^31 - 1, else int64_t: 64-bit division is emulated on GPUs). No
// torch calls and only the built-ins threadIdx / blockIdx / blockDim /
// gridDim: the launcher instantiates the kernels, and
// tests/test_ops/cuda_kernels_on_cpu.cpp compiles this same file with the
// host compiler and runs the kernels on a CPU, block by block.
//
// Work unit: one thread per (sample, weight group, pixel). A thread works
// out the window of its pixel (offsets and padding masks) and loads its
// weights once per chunk of up to kTapChunk taps (a 3x3 window is one
// chunk), then reuses them for the C/G channels c = g, g + G, ... of the
// weight group, one channel at a time.
// - forward: the pixel is an output pixel;
// - backward, fused: as an output pixel it gives the weight gradient,
//   reduced over the group's channels in registers; as an input pixel the
//   input gradient, gathered over the output pixels whose windows read it.
// The strip kernels (3 x 3 windows at unit stride and dilation, a CoT
// layer's) give a thread kPixels adjacent pixels of a row, so that each
// input or output-gradient row is read once per strip rather than three
// times per pixel, and move a strip's pixels as one vector where padding
// and width allow; the launcher uses them only in benchmark builds with
// MMCOT_CUDA_STRIP_PIXELS > 1 until a GPU run shows they are faster.
// Every value is written by one thread in a fixed order: no atomics,
// deterministic. Values of a window larger than one chunk, or of several
// heads, are accumulated in the output across chunks and heads (read by the
// thread that wrote them).
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

constexpr int kTapChunk = 9;

// Launch shape: threads per block, and the blocks an SM must hold at once
// with 32-bit indices and 32- or 16-bit values (a cap on registers per
// thread: 4 blocks of 256, 64 registers, lets the backward keep 32 warps
// per SM instead of 24, 5-9% faster on an H100, with no spills; the double
// and 64-bit-index kernels take the registers they need). Benchmark builds
// may override the macros (tools/analysis/build_kernel_variants.py).
#ifndef MMCOT_CUDA_THREADS_PER_BLOCK
#define MMCOT_CUDA_THREADS_PER_BLOCK 256
#endif
#ifndef MMCOT_CUDA_MIN_BLOCKS_PER_SM
#define MMCOT_CUDA_MIN_BLOCKS_PER_SM 4
#endif
// Pixels of a row per thread of the strip kernels, forward and backward for
// 3 x 3 windows at unit stride and dilation (1: the general kernels for
// every window); a benchmark-only knob until a GPU run picks a value.
#ifndef MMCOT_CUDA_STRIP_PIXELS
#define MMCOT_CUDA_STRIP_PIXELS 1
#endif
constexpr int kThreadsPerBlock = MMCOT_CUDA_THREADS_PER_BLOCK;
constexpr int kStripPixels = MMCOT_CUDA_STRIP_PIXELS;

template <typename T, typename index_t>
constexpr int min_blocks_per_sm() {
  return sizeof(index_t) == 4 && sizeof(T) <= 4 ? MMCOT_CUDA_MIN_BLOCKS_PER_SM
                                                : 1;
}

// The shape in the kernel's index type.
template <typename index_t>
struct KernelShape {
  index_t channels, height, width, heads, groups, out_height, out_width;
  index_t kernel_w, taps, stride_h, stride_w, pad_h, pad_w, dilation_h,
      dilation_w;

  MMCOT_HOST_DEVICE explicit KernelShape(const LocalAggregationShape& s)
      : channels(s.channels), height(s.height), width(s.width),
        heads(s.heads), groups(s.groups), out_height(s.out_height),
        out_width(s.out_width), kernel_w(s.kernel_w), taps(s.taps()),
        stride_h(s.stride_h), stride_w(s.stride_w), pad_h(s.pad_h),
        pad_w(s.pad_w), dilation_h(s.dilation_h), dilation_w(s.dilation_w) {}

  MMCOT_HOST_DEVICE index_t in_plane() const { return height * width; }
  MMCOT_HOST_DEVICE index_t out_plane() const { return out_height * out_width; }
};

// Input offsets (y_in * width + x_in, or -1 in the padding) of taps
// [first, first + count) of the window of output pixel (y, x).
template <typename index_t>
MMCOT_HOST_DEVICE inline void window_offsets(const KernelShape<index_t>& s,
                                             index_t y, index_t x, int first,
                                             int count, index_t* offsets) {
  index_t i = first / s.kernel_w, j = first - i * s.kernel_w;  // tap (i, j)
#pragma unroll
  for (int t = 0; t < kTapChunk; ++t) {
    offsets[t] = -1;
    if (t < count) {
      const index_t y_in = y * s.stride_h - s.pad_h + i * s.dilation_h;
      const index_t x_in = x * s.stride_w - s.pad_w + j * s.dilation_w;
      if (y_in >= 0 && y_in < s.height && x_in >= 0 && x_in < s.width) {
        offsets[t] = y_in * s.width + x_in;
      }
      if (++j == s.kernel_w) {
        j = 0;
        ++i;
      }
    }
  }
}

// Output positions (y * out_width + x, or -1) whose window reads input pixel
// (y_in, x_in) with taps [first, first + count).
template <bool kUnitStride, typename index_t>
MMCOT_HOST_DEVICE inline void reader_positions(const KernelShape<index_t>& s,
                                               index_t y_in, index_t x_in,
                                               int first, int count,
                                               index_t* positions) {
  index_t i = first / s.kernel_w, j = first - i * s.kernel_w;  // tap (i, j)
#pragma unroll
  for (int t = 0; t < kTapChunk; ++t) {
    positions[t] = -1;
    if (t < count) {
      index_t y = y_in + s.pad_h - i * s.dilation_h;
      index_t x = x_in + s.pad_w - j * s.dilation_w;
      bool inside = y >= 0 && x >= 0;
      if (!kUnitStride && inside) {
        inside = y % s.stride_h == 0 && x % s.stride_w == 0;
        y /= s.stride_h;
        x /= s.stride_w;
      }
      if (inside && y < s.out_height && x < s.out_width) {
        positions[t] = y * s.out_width + x;
      }
      if (++j == s.kernel_w) {
        j = 0;
        ++i;
      }
    }
  }
}

template <typename index_t>
MMCOT_HOST_DEVICE inline int chunk_size(index_t taps, int first) {
  const index_t left = taps - first;
  return left < kTapChunk ? static_cast<int>(left) : kTapChunk;
}

// The launcher keeps total + blocks * threads within index_t.
#define MMCOT_GRID_STRIDE_LOOP(index_t, i, n)                              \
  for (index_t i = static_cast<index_t>(blockIdx.x) *                     \
                       static_cast<index_t>(blockDim.x) +                 \
                   static_cast<index_t>(threadIdx.x);                     \
       i < (n);                                                            \
       i += static_cast<index_t>(blockDim.x) * static_cast<index_t>(gridDim.x))

// total = batch * heads * groups * out_plane
template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreadsPerBlock,
                                  min_blocks_per_sm<T, index_t>())
    local_aggregation_forward_cuda_kernel(
    const index_t total, const T* __restrict__ input,
    const T* __restrict__ weight, T* __restrict__ output,
    const LocalAggregationShape shape) {
  using acc_t = typename AccType<T>::type;
  const KernelShape<index_t> s(shape);
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  const index_t channel_step = s.groups;  // c = g + k * groups
  MMCOT_GRID_STRIDE_LOOP(index_t, index, total) {
    const index_t p = index % out_plane;
    const index_t rest = index / out_plane;
    const index_t g = rest % s.groups;
    const index_t n_head = rest / s.groups;  // n * heads + head
    const index_t n = n_head / s.heads;
    const index_t y = p / s.out_width, x = p - y * s.out_width;
    const T* w = weight + (n_head * s.groups + g) * s.taps * out_plane + p;
    const T* v = input + (n * s.channels + g) * in_plane;
    T* out = output + (n_head * s.channels + g) * out_plane + p;
    for (int first = 0; first < s.taps; first += kTapChunk) {
      const int count = chunk_size(s.taps, first);
      index_t offsets[kTapChunk];
      acc_t weights[kTapChunk];
      window_offsets(s, y, x, first, count, offsets);
#pragma unroll
      for (int t = 0; t < kTapChunk; ++t) {
        weights[t] = t < count && offsets[t] >= 0
                         ? static_cast<acc_t>(w[(first + t) * out_plane])
                         : acc_t(0);
      }
      for (index_t c = g, k = 0; c < s.channels; c += channel_step, ++k) {
        const T* vc = v + k * channel_step * in_plane;
        T* oc = out + k * channel_step * out_plane;
        acc_t sum = first == 0 ? acc_t(0) : static_cast<acc_t>(*oc);
#pragma unroll
        for (int t = 0; t < kTapChunk; ++t) {
          if (t < count && offsets[t] >= 0) {
            sum += weights[t] * static_cast<acc_t>(vc[offsets[t]]);
          }
        }
        *oc = static_cast<T>(sum);
      }
    }
  }
}

// The strip backward's blocks per SM (its 9 x kPixels sums and weights
// need more registers than the general kernels' 64 to run without spills).
template <typename T, typename index_t>
constexpr int strip_backward_min_blocks_per_sm() {
  return sizeof(index_t) == 4 && sizeof(T) <= 4 ? 2 : 1;
}

// Whether the strip kernels compute this shape.
MMCOT_HOST_DEVICE inline bool strip_kernels_apply(
    const LocalAggregationShape& s) {
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 &&
         s.stride_w == 1 && s.dilation_h == 1 && s.dilation_w == 1;
}

// Whether the strip kernels may move a strip's pixels as one vector
// (kAligned): padding 1 across, so that input and output rows are equally
// wide, and rows of a multiple of `pixels` pixels; the launcher also checks
// that every buffer is aligned to `pixels` elements.
MMCOT_HOST_DEVICE inline bool strip_vectors_fit(const LocalAggregationShape& s,
                                                int pixels) {
  return s.pad_w == 1 && s.width % pixels == 0;
}

// The masks and row offsets of a strip's 3 x 3 windows over a plane of
// height x width: window row i is plane row first_row + i * row_step, at
// offset rows[i] of span element 0, which lies in column col0; span element u
// is inside where its column is, strip pixel x0 + v where it is below
// pixel_end.
template <int kPixels, typename index_t>
struct StripWindows {
  index_t rows[3];
  bool row_inside[3], col_inside[kPixels + 2], pixel_inside[kPixels];

  MMCOT_HOST_DEVICE StripWindows(index_t first_row, index_t row_step,
                                 index_t col0, index_t height, index_t width,
                                 index_t x0, index_t pixel_end) {
#pragma unroll
    for (int i = 0; i < 3; ++i) {
      const index_t y = first_row + i * row_step;
      row_inside[i] = y >= 0 && y < height;
      rows[i] = y * width + col0;
    }
#pragma unroll
    for (int u = 0; u < kPixels + 2; ++u) {
      col_inside[u] = col0 + u >= 0 && col0 + u < width;
    }
#pragma unroll
    for (int v = 0; v < kPixels; ++v) pixel_inside[v] = x0 + v < pixel_end;
  }
};

// kPixels values stored together and aligned to their size: one vector load
// or store on a GPU.
template <typename T, int kPixels>
struct alignas(sizeof(T) * kPixels) PixelVector {
  T value[kPixels];
};

// values[v] = p[v] for the kPixels pixels of a strip, 0 where not inside;
// with kAligned every pixel is inside and p is aligned.
template <int kPixels, bool kAligned, typename T, typename acc_t>
MMCOT_HOST_DEVICE inline void load_pixels(const T* p, const bool* inside,
                                          acc_t* values) {
  if constexpr (kAligned) {
    const auto vector = *reinterpret_cast<const PixelVector<T, kPixels>*>(p);
#pragma unroll
    for (int v = 0; v < kPixels; ++v) {
      values[v] = static_cast<acc_t>(vector.value[v]);
    }
  } else {
#pragma unroll
    for (int v = 0; v < kPixels; ++v) {
      values[v] = inside[v] ? static_cast<acc_t>(p[v]) : acc_t(0);
    }
  }
}

// span[u] = p[u] for the kPixels + 2 columns of a strip's windows (p + 1 is
// the strip's first pixel), 0 where a column is not inside.
template <int kPixels, bool kAligned, typename T, typename acc_t>
MMCOT_HOST_DEVICE inline void load_span(const T* p, const bool* inside,
                                        acc_t* span) {
  if constexpr (kAligned) {
    span[0] = inside[0] ? static_cast<acc_t>(p[0]) : acc_t(0);
    load_pixels<kPixels, true>(p + 1, inside + 1, span + 1);
    span[kPixels + 1] =
        inside[kPixels + 1] ? static_cast<acc_t>(p[kPixels + 1]) : acc_t(0);
  } else {
#pragma unroll
    for (int u = 0; u < kPixels + 2; ++u) {
      span[u] = inside[u] ? static_cast<acc_t>(p[u]) : acc_t(0);
    }
  }
}

// p[v] = values[v] for the pixels of a strip that are inside.
template <int kPixels, bool kAligned, typename T, typename acc_t>
MMCOT_HOST_DEVICE inline void store_pixels(T* p, const bool* inside,
                                           const acc_t* values) {
  if constexpr (kAligned) {
    PixelVector<T, kPixels> vector;
#pragma unroll
    for (int v = 0; v < kPixels; ++v) {
      vector.value[v] = static_cast<T>(values[v]);
    }
    *reinterpret_cast<PixelVector<T, kPixels>*>(p) = vector;
  } else {
#pragma unroll
    for (int v = 0; v < kPixels; ++v) {
      if (inside[v]) p[v] = static_cast<T>(values[v]);
    }
  }
}

// Forward for 3 x 3 windows at unit stride and dilation (a CoT layer's), any
// padding and heads. Work unit: a strip of kPixels adjacent output pixels of
// one row of (sample, head, weight group); per channel, each of the three
// input rows is read once as kPixels + 2 values, where the general forward
// reads 3 values per pixel and row. The 9 x kPixels weights are loaded once
// and reused for the group's channels. kAligned (strip_vectors_fit and
// aligned buffers): a strip's pixels move as one vector.
// total = batch * heads * groups * out_height * ceil(out_width / kPixels)
template <int kPixels, bool kAligned, typename T, typename index_t>
__global__ void __launch_bounds__(kThreadsPerBlock,
                                  min_blocks_per_sm<T, index_t>())
    local_aggregation_forward_strip_cuda_kernel(
    const index_t total, const T* __restrict__ input,
    const T* __restrict__ weight, T* __restrict__ output,
    const LocalAggregationShape shape) {
  static_assert(kPixels >= 1 && kPixels <= 4,
                "9 x kPixels weights must stay in registers");
  using acc_t = typename AccType<T>::type;
  constexpr int kSpan = kPixels + 2;  // input columns of a strip's windows
  const KernelShape<index_t> s(shape);
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  const index_t strips = (s.out_width + kPixels - 1) / kPixels;
  MMCOT_GRID_STRIDE_LOOP(index_t, index, total) {
    const index_t strip = index % strips;
    index_t rest = index / strips;
    const index_t y = rest % s.out_height;
    rest /= s.out_height;
    const index_t g = rest % s.groups;
    const index_t n_head = rest / s.groups;  // n * heads + head
    const index_t n = n_head / s.heads;
    const index_t x0 = strip * kPixels;
    // input rows y - pad_h + i, span element 0 at column x0 - pad_w
    const StripWindows<kPixels, index_t> window(
        y - s.pad_h, 1, x0 - s.pad_w, s.height, s.width, x0, s.out_width);
    const index_t p0 = y * s.out_width + x0;
    const T* w = weight + (n_head * s.groups + g) * 9 * out_plane + p0;
    acc_t weights[9][kPixels];  // 0 where the tap lies in the padding
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      acc_t tap[kPixels];
      load_pixels<kPixels, kAligned>(w + t * out_plane, window.pixel_inside,
                                     tap);
#pragma unroll
      for (int v = 0; v < kPixels; ++v) {
        weights[t][v] =
            window.row_inside[t / 3] && window.col_inside[v + t % 3]
                ? tap[v]
                : acc_t(0);
      }
    }
    const T* v_group = input + (n * s.channels + g) * in_plane;
    T* out = output + (n_head * s.channels + g) * out_plane + p0;
    for (index_t c = g, k = 0; c < s.channels; c += s.groups, ++k) {
      const T* vc = v_group + k * s.groups * in_plane;
      acc_t sums[kPixels];
#pragma unroll
      for (int v = 0; v < kPixels; ++v) sums[v] = acc_t(0);
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        if (!window.row_inside[i]) continue;
        acc_t values[kSpan];
        load_span<kPixels, kAligned>(vc + window.rows[i], window.col_inside,
                                     values);
#pragma unroll
        for (int j = 0; j < 3; ++j) {
#pragma unroll
          for (int v = 0; v < kPixels; ++v) {
            sums[v] += weights[i * 3 + j][v] * values[v + j];
          }
        }
      }
      store_pixels<kPixels, kAligned>(out + k * s.groups * out_plane,
                                      window.pixel_inside, sums);
    }
  }
}

// The weight gradient of output pixel p of (n, g), every head and tap.
template <typename T, typename index_t>
MMCOT_HOST_DEVICE inline void weight_gradient(
    const KernelShape<index_t>& s, index_t n, index_t g, index_t p,
    const T* __restrict__ grad_output, const T* __restrict__ input,
    T* __restrict__ grad_weight) {
  using acc_t = typename AccType<T>::type;
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  const index_t y = p / s.out_width, x = p - y * s.out_width;
  const T* v = input + (n * s.channels + g) * in_plane;
  for (int first = 0; first < s.taps; first += kTapChunk) {
    const int count = chunk_size(s.taps, first);
    index_t offsets[kTapChunk];
    window_offsets(s, y, x, first, count, offsets);
    for (index_t head = 0; head < s.heads; ++head) {
      const index_t n_head = n * s.heads + head;
      const T* gy = grad_output + (n_head * s.channels + g) * out_plane + p;
      acc_t sums[kTapChunk];
#pragma unroll
      for (int t = 0; t < kTapChunk; ++t) sums[t] = acc_t(0);
      for (index_t c = g, k = 0; c < s.channels; c += s.groups, ++k) {
        const acc_t dy = static_cast<acc_t>(gy[k * s.groups * out_plane]);
        const T* vc = v + k * s.groups * in_plane;
#pragma unroll
        for (int t = 0; t < kTapChunk; ++t) {
          if (t < count && offsets[t] >= 0) {
            sums[t] += dy * static_cast<acc_t>(vc[offsets[t]]);
          }
        }
      }
      T* gw = grad_weight + ((n_head * s.groups + g) * s.taps + first) *
                                out_plane + p;
#pragma unroll
      for (int t = 0; t < kTapChunk; ++t) {
        if (t < count) gw[t * out_plane] = static_cast<T>(sums[t]);
      }
    }
  }
}

// The input gradient of input pixel q of (n, g), every channel of the group.
template <bool kUnitStride, typename T, typename index_t>
MMCOT_HOST_DEVICE inline void input_gradient(
    const KernelShape<index_t>& s, index_t n, index_t g, index_t q,
    const T* __restrict__ grad_output, const T* __restrict__ weight,
    T* __restrict__ grad_input) {
  using acc_t = typename AccType<T>::type;
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  const index_t y_in = q / s.width, x_in = q - y_in * s.width;
  T* gx = grad_input + (n * s.channels + g) * in_plane + q;
  for (int first = 0; first < s.taps; first += kTapChunk) {
    const int count = chunk_size(s.taps, first);
    index_t positions[kTapChunk];
    reader_positions<kUnitStride>(s, y_in, x_in, first, count, positions);
    for (index_t head = 0; head < s.heads; ++head) {
      const index_t n_head = n * s.heads + head;
      const T* w = weight + ((n_head * s.groups + g) * s.taps + first) *
                                out_plane;
      acc_t weights[kTapChunk];
#pragma unroll
      for (int t = 0; t < kTapChunk; ++t) {
        weights[t] = t < count && positions[t] >= 0
                         ? static_cast<acc_t>(w[t * out_plane + positions[t]])
                         : acc_t(0);
      }
      const T* gy = grad_output + (n_head * s.channels + g) * out_plane;
      const bool start = first == 0 && head == 0;
      for (index_t c = g, k = 0; c < s.channels; c += s.groups, ++k) {
        const T* gyc = gy + k * s.groups * out_plane;
        T* gxc = gx + k * s.groups * in_plane;
        acc_t sum = start ? acc_t(0) : static_cast<acc_t>(*gxc);
#pragma unroll
        for (int t = 0; t < kTapChunk; ++t) {
          if (t < count && positions[t] >= 0) {
            sum += weights[t] * static_cast<acc_t>(gyc[positions[t]]);
          }
        }
        *gxc = static_cast<T>(sum);
      }
    }
  }
}

// The weight gradients of output pixels (y, x0 .. x0 + kPixels - 1) of
// (n, g), every head and tap, for the strip backward: per channel, each of
// the three input rows is read once as kPixels + 2 values.
template <int kPixels, bool kAligned, typename T, typename index_t>
MMCOT_HOST_DEVICE inline void strip_weight_gradient(
    const KernelShape<index_t>& s, index_t n, index_t g, index_t y,
    index_t x0, const T* __restrict__ grad_output, const T* __restrict__ input,
    T* __restrict__ grad_weight) {
  using acc_t = typename AccType<T>::type;
  constexpr int kSpan = kPixels + 2;
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  // input rows y - pad_h + i, span element 0 at column x0 - pad_w
  const StripWindows<kPixels, index_t> window(
      y - s.pad_h, 1, x0 - s.pad_w, s.height, s.width, x0, s.out_width);
  const index_t p0 = y * s.out_width + x0;
  const T* v_group = input + (n * s.channels + g) * in_plane;
  for (index_t head = 0; head < s.heads; ++head) {
    const index_t n_head = n * s.heads + head;
    const T* gy = grad_output + (n_head * s.channels + g) * out_plane + p0;
    acc_t sums[9][kPixels];
#pragma unroll
    for (int t = 0; t < 9; ++t) {
#pragma unroll
      for (int v = 0; v < kPixels; ++v) sums[t][v] = acc_t(0);
    }
    for (index_t c = g, k = 0; c < s.channels; c += s.groups, ++k) {
      const T* gyc = gy + k * s.groups * out_plane;
      const T* vc = v_group + k * s.groups * in_plane;
      acc_t dy[kPixels];
      load_pixels<kPixels, kAligned>(gyc, window.pixel_inside, dy);
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        if (!window.row_inside[i]) continue;
        acc_t values[kSpan];
        load_span<kPixels, kAligned>(vc + window.rows[i], window.col_inside,
                                     values);
#pragma unroll
        for (int j = 0; j < 3; ++j) {
#pragma unroll
          for (int v = 0; v < kPixels; ++v) {
            sums[i * 3 + j][v] += dy[v] * values[v + j];
          }
        }
      }
    }
    T* gw = grad_weight + (n_head * s.groups + g) * 9 * out_plane + p0;
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      store_pixels<kPixels, kAligned>(gw + t * out_plane, window.pixel_inside,
                                      sums[t]);
    }
  }
}

// The input gradients of input pixels (y_in, x0 .. x0 + kPixels - 1) of
// (n, g), every channel of the group, for the strip backward: tap (i, j) of
// input pixel x reads output pixel (y_in + pad_h - i, x + pad_w - j), so per
// channel each of three output-gradient rows is read once as kPixels + 2
// values; the 9 x kPixels weights are loaded once per head.
template <int kPixels, bool kAligned, typename T, typename index_t>
MMCOT_HOST_DEVICE inline void strip_input_gradient(
    const KernelShape<index_t>& s, index_t n, index_t g, index_t y_in,
    index_t x0, const T* __restrict__ grad_output, const T* __restrict__ weight,
    T* __restrict__ grad_input) {
  using acc_t = typename AccType<T>::type;
  constexpr int kSpan = kPixels + 2;
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  // output rows y_in + pad_h - i, span element 0 at column x0 + pad_w - 2
  const StripWindows<kPixels, index_t> window(
      y_in + s.pad_h, -1, x0 + s.pad_w - 2, s.out_height, s.out_width, x0,
      s.width);
  T* gx = grad_input + (n * s.channels + g) * in_plane + y_in * s.width + x0;
  for (index_t head = 0; head < s.heads; ++head) {
    const index_t n_head = n * s.heads + head;
    const T* w = weight + (n_head * s.groups + g) * 9 * out_plane;
    acc_t weights[9][kPixels];  // 0 where no output pixel reads the input
#pragma unroll
    for (int t = 0; t < 9; ++t) {
      const int i = t / 3, u0 = 2 - t % 3;  // span element of pixel 0
      acc_t span[kSpan];
      if (window.row_inside[i]) {
        load_span<kPixels, kAligned>(w + t * out_plane + window.rows[i],
                                     window.col_inside, span);
      }
#pragma unroll
      for (int v = 0; v < kPixels; ++v) {
        weights[t][v] = window.pixel_inside[v] && window.row_inside[i] &&
                                window.col_inside[v + u0]
                            ? span[v + u0]
                            : acc_t(0);
      }
    }
    const T* gy = grad_output + (n_head * s.channels + g) * out_plane;
    for (index_t c = g, k = 0; c < s.channels; c += s.groups, ++k) {
      const T* gyc = gy + k * s.groups * out_plane;
      T* gxc = gx + k * s.groups * in_plane;
      acc_t sums[kPixels];
      if (head == 0) {
#pragma unroll
        for (int v = 0; v < kPixels; ++v) sums[v] = acc_t(0);
      } else {
        load_pixels<kPixels, kAligned>(gxc, window.pixel_inside, sums);
      }
#pragma unroll
      for (int i = 0; i < 3; ++i) {
        if (!window.row_inside[i]) continue;
        acc_t values[kSpan];
        load_span<kPixels, kAligned>(gyc + window.rows[i], window.col_inside,
                                     values);
#pragma unroll
        for (int j = 0; j < 3; ++j) {
#pragma unroll
          for (int v = 0; v < kPixels; ++v) {
            sums[v] += weights[i * 3 + j][v] * values[v + 2 - j];
          }
        }
      }
      store_pixels<kPixels, kAligned>(gxc, window.pixel_inside, sums);
    }
  }
}

// Fused strip backward for 3 x 3 windows at unit stride and dilation: the
// thread of (n, g, row r, strip x0 .. x0 + kPixels - 1) writes the weight
// gradients of those output pixels and the input gradients of those input
// pixels, where each exists. grad_input / grad_weight may be null. kAligned
// as for the forward.
// total = batch * groups * max(height, out_height) *
//         ceil(max(width, out_width) / kPixels)
template <int kPixels, bool kAligned, typename T, typename index_t>
__global__ void __launch_bounds__(
    kThreadsPerBlock, strip_backward_min_blocks_per_sm<T, index_t>())
    local_aggregation_backward_strip_cuda_kernel(
    const index_t total, const T* __restrict__ grad_output,
    const T* __restrict__ input, const T* __restrict__ weight,
    T* __restrict__ grad_input, T* __restrict__ grad_weight,
    const LocalAggregationShape shape) {
  const KernelShape<index_t> s(shape);
  const index_t rows = s.out_height > s.height ? s.out_height : s.height;
  const index_t cols = s.out_width > s.width ? s.out_width : s.width;
  const index_t strips = (cols + kPixels - 1) / kPixels;
  MMCOT_GRID_STRIDE_LOOP(index_t, index, total) {
    const index_t strip = index % strips;
    index_t rest = index / strips;
    const index_t r = rest % rows;
    rest /= rows;
    const index_t g = rest % s.groups;
    const index_t n = rest / s.groups;
    const index_t x0 = strip * kPixels;
    if (grad_weight != nullptr && r < s.out_height && x0 < s.out_width) {
      strip_weight_gradient<kPixels, kAligned>(s, n, g, r, x0, grad_output,
                                               input, grad_weight);
    }
    if (grad_input != nullptr && r < s.height && x0 < s.width) {
      strip_input_gradient<kPixels, kAligned>(s, n, g, r, x0, grad_output,
                                              weight, grad_input);
    }
  }
}

// Fused backward. total = batch * groups * max(in_plane, out_plane); thread
// (n, g, q) writes the weight gradient of output pixel q and the input
// gradient of input pixel q, where each exists. grad_input / grad_weight
// may be null when not needed.
template <bool kUnitStride, typename T, typename index_t>
__global__ void __launch_bounds__(kThreadsPerBlock,
                                  min_blocks_per_sm<T, index_t>())
    local_aggregation_backward_cuda_kernel(
    const index_t total, const T* __restrict__ grad_output,
    const T* __restrict__ input, const T* __restrict__ weight,
    T* __restrict__ grad_input, T* __restrict__ grad_weight,
    const LocalAggregationShape shape) {
  const KernelShape<index_t> s(shape);
  const index_t out_plane = s.out_plane(), in_plane = s.in_plane();
  const index_t pixels = out_plane > in_plane ? out_plane : in_plane;
  MMCOT_GRID_STRIDE_LOOP(index_t, index, total) {
    const index_t q = index % pixels;
    const index_t rest = index / pixels;
    const index_t g = rest % s.groups;
    const index_t n = rest / s.groups;
    if (grad_weight != nullptr && q < out_plane) {
      weight_gradient(s, n, g, q, grad_output, input, grad_weight);
    }
    if (grad_input != nullptr && q < in_plane) {
      input_gradient<kUnitStride>(s, n, g, q, grad_output, weight,
                                  grad_input);
    }
  }
}

}  // namespace mmcot

#endif  // MMCOT_LOCAL_AGGREGATION_CUDA_KERNEL_CUH
