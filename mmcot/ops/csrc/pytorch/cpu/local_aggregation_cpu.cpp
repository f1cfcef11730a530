// CPU kernels of the local aggregation op.
//
// One task per (sample n, weight group g) owns every channel c with
// c % G == g across all heads, so each task writes disjoint slices of the
// output, grad_input and grad_weight: no atomics, and the reductions run in
// a fixed order (deterministic). Inner loops run along output rows, where
// stride 1 gives contiguous, vectorisable accesses.
#include <ATen/Parallel.h>

#include <algorithm>

#include "../local_aggregation.h"

namespace mmcot {
namespace {

// The contiguous run [begin, end) of output columns whose tap lands inside
// the input row, and the input column of output column 0.
struct TapColumns {
  int64_t begin, end, offset;
};

inline TapColumns tap_columns(const LocalAggregationShape& s, int64_t j) {
  const int64_t offset = j * s.dilation_w - s.pad_w;
  const int64_t begin = first_inside(offset, s.stride_w);
  const int64_t end = end_inside(offset, s.stride_w, s.width, s.out_width);
  return {begin, std::max(begin, end), offset};
}

inline int64_t tap_row(const LocalAggregationShape& s, int64_t y, int64_t i) {
  return y * s.stride_h - s.pad_h + i * s.dilation_h;
}

template <typename T>
void forward_task(const LocalAggregationShape& s, const T* input,
                  const T* weight, T* output, int64_t n, int64_t g) {
  for (int64_t head = 0; head < s.heads; ++head) {
    const T* w = weight + s.weight_offset(n, head, g, 0);
    for (int64_t c = g; c < s.channels; c += s.groups) {
      const T* v = input + s.input_offset(n, c);
      T* out = output + s.output_offset(n, head, c);
      std::fill(out, out + s.out_plane(), T(0));
      for (int64_t y = 0; y < s.out_height; ++y) {
        T* out_row = out + y * s.out_width;
        for (int64_t i = 0; i < s.kernel_h; ++i) {
          const int64_t y_in = tap_row(s, y, i);
          if (y_in < 0 || y_in >= s.height) continue;
          const T* v_row = v + y_in * s.width;
          for (int64_t j = 0; j < s.kernel_w; ++j) {
            const T* w_row =
                w + (i * s.kernel_w + j) * s.out_plane() + y * s.out_width;
            const TapColumns t = tap_columns(s, j);
            if (s.stride_w == 1) {
              const T* v_tap = v_row + t.offset;
              for (int64_t x = t.begin; x < t.end; ++x)
                out_row[x] += w_row[x] * v_tap[x];
            } else {
              for (int64_t x = t.begin; x < t.end; ++x)
                out_row[x] += w_row[x] * v_row[x * s.stride_w + t.offset];
            }
          }
        }
      }
    }
  }
}

// grad_weight[n, head, g, tap, y, x] =
//     sum_{c % G == g} grad_output[n, head*C + c, y, x] * window_tap(input[n, c])
template <typename T>
void weight_backward_task(const LocalAggregationShape& s, const T* grad_output,
                          const T* input, T* grad_weight, int64_t n,
                          int64_t g) {
  for (int64_t head = 0; head < s.heads; ++head) {
    T* gw = grad_weight + s.weight_offset(n, head, g, 0);
    std::fill(gw, gw + s.taps() * s.out_plane(), T(0));
    for (int64_t c = g; c < s.channels; c += s.groups) {
      const T* v = input + s.input_offset(n, c);
      const T* gout = grad_output + s.output_offset(n, head, c);
      for (int64_t y = 0; y < s.out_height; ++y) {
        const T* gout_row = gout + y * s.out_width;
        for (int64_t i = 0; i < s.kernel_h; ++i) {
          const int64_t y_in = tap_row(s, y, i);
          if (y_in < 0 || y_in >= s.height) continue;
          const T* v_row = v + y_in * s.width;
          for (int64_t j = 0; j < s.kernel_w; ++j) {
            T* gw_row =
                gw + (i * s.kernel_w + j) * s.out_plane() + y * s.out_width;
            const TapColumns t = tap_columns(s, j);
            if (s.stride_w == 1) {
              const T* v_tap = v_row + t.offset;
              for (int64_t x = t.begin; x < t.end; ++x)
                gw_row[x] += gout_row[x] * v_tap[x];
            } else {
              for (int64_t x = t.begin; x < t.end; ++x)
                gw_row[x] += gout_row[x] * v_row[x * s.stride_w + t.offset];
            }
          }
        }
      }
    }
  }
}

// grad_input[n, c] = sum_{head, tap} scatter of weight * grad_output, the
// transpose of the forward gather; every c here belongs to this task only.
template <typename T>
void input_backward_task(const LocalAggregationShape& s, const T* grad_output,
                         const T* weight, T* grad_input, int64_t n,
                         int64_t g) {
  for (int64_t c = g; c < s.channels; c += s.groups) {
    T* gv = grad_input + s.input_offset(n, c);
    std::fill(gv, gv + s.in_plane(), T(0));
    for (int64_t head = 0; head < s.heads; ++head) {
      const T* w = weight + s.weight_offset(n, head, g, 0);
      const T* gout = grad_output + s.output_offset(n, head, c);
      for (int64_t y = 0; y < s.out_height; ++y) {
        const T* gout_row = gout + y * s.out_width;
        for (int64_t i = 0; i < s.kernel_h; ++i) {
          const int64_t y_in = tap_row(s, y, i);
          if (y_in < 0 || y_in >= s.height) continue;
          T* gv_row = gv + y_in * s.width;
          for (int64_t j = 0; j < s.kernel_w; ++j) {
            const T* w_row =
                w + (i * s.kernel_w + j) * s.out_plane() + y * s.out_width;
            const TapColumns t = tap_columns(s, j);
            if (s.stride_w == 1) {
              T* gv_tap = gv_row + t.offset;
              for (int64_t x = t.begin; x < t.end; ++x)
                gv_tap[x] += w_row[x] * gout_row[x];
            } else {
              for (int64_t x = t.begin; x < t.end; ++x)
                gv_row[x * s.stride_w + t.offset] += w_row[x] * gout_row[x];
            }
          }
        }
      }
    }
  }
}

template <typename Task>
void for_each_sample_group(const LocalAggregationShape& s, const Task& task) {
  at::parallel_for(0, s.batch * s.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) task(t / s.groups, t % s.groups);
  });
}

void local_aggregation_forward_cpu(const at::Tensor& input,
                                   const at::Tensor& weight,
                                   at::Tensor& output,
                                   const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "local_aggregation_cpu", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    for_each_sample_group(shape, [&](int64_t n, int64_t g) {
      forward_task(shape, in, w, out, n, g);
    });
  });
}

void local_aggregation_backward_cpu(const at::Tensor& grad_output,
                                    const at::Tensor& input,
                                    const at::Tensor& weight,
                                    at::Tensor& grad_input,
                                    at::Tensor& grad_weight,
                                    const LocalAggregationShape& shape) {
  AT_DISPATCH_FLOATING_TYPES(
      input.scalar_type(), "local_aggregation_backward_cpu", [&] {
        const scalar_t* gout = grad_output.const_data_ptr<scalar_t>();
        const scalar_t* in = input.const_data_ptr<scalar_t>();
        const scalar_t* w = weight.const_data_ptr<scalar_t>();
        scalar_t* gin = grad_input.defined()
                            ? grad_input.mutable_data_ptr<scalar_t>()
                            : nullptr;
        scalar_t* gw = grad_weight.defined()
                           ? grad_weight.mutable_data_ptr<scalar_t>()
                           : nullptr;
        for_each_sample_group(shape, [&](int64_t n, int64_t g) {
          if (gw) weight_backward_task(shape, gout, in, gw, n, g);
          if (gin) input_backward_task(shape, gout, w, gin, n, g);
        });
      });
}

}  // namespace

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CPU,
                           local_aggregation_forward_cpu);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardOp, CPU,
                           local_aggregation_backward_cpu);

}  // namespace mmcot
