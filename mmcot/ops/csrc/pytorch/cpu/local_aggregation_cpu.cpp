// CPU kernels of the local aggregation op.
//
// One task per (sample n, weight group g) owns every channel c with
// c % G == g across all heads, so each task writes disjoint slices of the
// output, grad_input and grad_weight: no atomics, and the reductions run in
// a fixed order (deterministic).
//
// The window geometry is planned once per call as segments: runs of output
// positions whose tap reads input positions at a fixed stride. With stride 1
// and an output as large as the input (CoTNet's windows), a tap shifts the
// flattened plane by a constant, so one segment covers the whole plane and a
// column mask drops the positions whose shifted column leaves the image:
// long, vectorisable loops even for 7 x 7 maps. Otherwise a segment is the
// valid part of one output row.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../local_aggregation.h"

namespace mmcot {
namespace {

struct Segment {
  int64_t tap;         // window tap k = i * K_w + j
  int64_t out_begin;   // first output position (flattened plane)
  int64_t in_begin;    // input position it reads (flattened plane)
  int64_t length;      // number of output positions
  int64_t in_stride;   // input step per output step
  const uint8_t* valid;  // per-position mask from out_begin, or null
};

class WindowPlan {
 public:
  explicit WindowPlan(const LocalAggregationShape& s) {
    const bool flat =
        s.stride_h == 1 && s.stride_w == 1 && s.out_width == s.width;
    if (flat) {
      plan_flat(s);
    } else {
      plan_rows(s);
    }
  }
  const std::vector<Segment>& segments() const { return segments_; }

 private:
  void plan_flat(const LocalAggregationShape& s) {
    masks_.assign(s.kernel_w * s.out_plane(), 0);
    for (int64_t i = 0; i < s.kernel_h; ++i) {
      const int64_t dy = i * s.dilation_h - s.pad_h;
      const int64_t y0 = first_inside(dy, 1);
      const int64_t y1 = end_inside(dy, 1, s.height, s.out_height);
      for (int64_t j = 0; j < s.kernel_w; ++j) {
        const int64_t dx = j * s.dilation_w - s.pad_w;
        const int64_t x0 = first_inside(dx, 1);
        const int64_t x1 = end_inside(dx, 1, s.width, s.out_width);
        if (y1 <= y0 || x1 <= x0) continue;
        const int64_t begin = y0 * s.out_width + x0;
        const int64_t end = (y1 - 1) * s.out_width + x1;
        const uint8_t* valid = nullptr;
        if (x0 > 0 || x1 < s.out_width) {  // the shift wraps across rows
          uint8_t* mask = masks_.data() + j * s.out_plane();
          for (int64_t p = 0; p < s.out_plane(); ++p) {
            const int64_t x = p % s.out_width;
            mask[p] = x >= x0 && x < x1;
          }
          valid = mask + begin;
        }
        segments_.push_back({i * s.kernel_w + j, begin,
                             begin + dy * s.width + dx, end - begin, 1,
                             valid});
      }
    }
  }

  void plan_rows(const LocalAggregationShape& s) {
    for (int64_t y = 0; y < s.out_height; ++y) {
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        const int64_t y_in = y * s.stride_h - s.pad_h + i * s.dilation_h;
        if (y_in < 0 || y_in >= s.height) continue;
        for (int64_t j = 0; j < s.kernel_w; ++j) {
          const int64_t dx = j * s.dilation_w - s.pad_w;
          const int64_t x0 = first_inside(dx, s.stride_w);
          const int64_t x1 = end_inside(dx, s.stride_w, s.width, s.out_width);
          if (x1 <= x0) continue;
          segments_.push_back({i * s.kernel_w + j, y * s.out_width + x0,
                               y_in * s.width + x0 * s.stride_w + dx, x1 - x0,
                               s.stride_w, nullptr});
        }
      }
    }
  }

  std::vector<Segment> segments_;
  std::vector<uint8_t> masks_;
};

// Over a segment: acc[k] += a[k] * b[k * stride] (gather, the forward
// and the weight gradient: acc and a at the segment's output positions, b
// at its input positions), or acc[k * stride] += a[k] * b[k] (scatter, the
// input gradient: acc at its input positions).
template <bool kScatter, typename T>
inline void multiply_add(T* __restrict__ acc, const T* __restrict__ a,
                         const T* __restrict__ b, const Segment& seg) {
  const int64_t n = seg.length;
  if (seg.valid != nullptr) {  // stride 1, masked
    const uint8_t* __restrict__ valid = seg.valid;
    for (int64_t k = 0; k < n; ++k) {
      const T product = a[k] * b[k];  // computed always: a vectorisable select
      acc[k] += valid[k] ? product : T(0);
    }
  } else if (seg.in_stride == 1) {
    for (int64_t k = 0; k < n; ++k) acc[k] += a[k] * b[k];
  } else if (kScatter) {
    for (int64_t k = 0; k < n; ++k) acc[k * seg.in_stride] += a[k] * b[k];
  } else {
    for (int64_t k = 0; k < n; ++k) acc[k] += a[k] * b[k * seg.in_stride];
  }
}

// output[n, head*C + c] for every channel c of group g.
template <typename T>
void forward_task(const LocalAggregationShape& s, const WindowPlan& plan,
                  const T* input, const T* weight, T* output, int64_t n,
                  int64_t g) {
  for (int64_t head = 0; head < s.heads; ++head) {
    const T* w = weight + s.weight_offset(n, head, g, 0);
    for (int64_t c = g; c < s.channels; c += s.groups) {
      T* out = output + s.output_offset(n, head, c);
      const T* v = input + s.input_offset(n, c);
      std::fill(out, out + s.out_plane(), T(0));
      for (const Segment& seg : plan.segments()) {
        multiply_add<false>(out + seg.out_begin,
                            w + seg.tap * s.out_plane() + seg.out_begin,
                            v + seg.in_begin, seg);
      }
    }
  }
}

// grad_weight[n, head, g, tap, y, x] =
//     sum_{c % G == g} grad_output[n, head*C + c, y, x] * window_tap(input[n, c])
template <typename T>
void weight_backward_task(const LocalAggregationShape& s,
                          const WindowPlan& plan, const T* grad_output,
                          const T* input, T* grad_weight, int64_t n,
                          int64_t g) {
  for (int64_t head = 0; head < s.heads; ++head) {
    T* gw = grad_weight + s.weight_offset(n, head, g, 0);
    std::fill(gw, gw + s.taps() * s.out_plane(), T(0));
    for (const Segment& seg : plan.segments()) {
      T* gw_seg = gw + seg.tap * s.out_plane() + seg.out_begin;
      for (int64_t c = g; c < s.channels; c += s.groups) {
        multiply_add<false>(
            gw_seg, grad_output + s.output_offset(n, head, c) + seg.out_begin,
            input + s.input_offset(n, c) + seg.in_begin, seg);
      }
    }
  }
}

// grad_input[n, c] = sum_{head, tap} scatter of weight * grad_output, the
// transpose of the forward gather; every c here belongs to this task only.
template <typename T>
void input_backward_task(const LocalAggregationShape& s,
                         const WindowPlan& plan, const T* grad_output,
                         const T* weight, T* grad_input, int64_t n,
                         int64_t g) {
  for (int64_t c = g; c < s.channels; c += s.groups) {
    T* gv = grad_input + s.input_offset(n, c);
    std::fill(gv, gv + s.in_plane(), T(0));
    for (int64_t head = 0; head < s.heads; ++head) {
      const T* w = weight + s.weight_offset(n, head, g, 0);
      const T* gout = grad_output + s.output_offset(n, head, c);
      for (const Segment& seg : plan.segments()) {
        multiply_add<true>(gv + seg.in_begin,
                             w + seg.tap * s.out_plane() + seg.out_begin,
                             gout + seg.out_begin, seg);
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
  const WindowPlan plan(shape);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "local_aggregation_cpu", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    for_each_sample_group(shape, [&](int64_t n, int64_t g) {
      forward_task(shape, plan, in, w, out, n, g);
    });
  });
}

void local_aggregation_backward_cpu(const at::Tensor& grad_output,
                                    const at::Tensor& input,
                                    const at::Tensor& weight,
                                    at::Tensor& grad_input,
                                    at::Tensor& grad_weight,
                                    const LocalAggregationShape& shape) {
  const WindowPlan plan(shape);
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
          if (gw) weight_backward_task(shape, plan, gout, in, gw, n, g);
          if (gin) input_backward_task(shape, plan, gout, w, gin, n, g);
        });
      });
}

}  // namespace

MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationForwardOp, CPU,
                           local_aggregation_forward_cpu);
MMCOT_REGISTER_DEVICE_IMPL(LocalAggregationBackwardOp, CPU,
                           local_aggregation_backward_cpu);

}  // namespace mmcot
