// The CPU kernels of the local aggregation op, compiled once per
// instruction set: each local_aggregation_cpu_<isa>.cpp defines
// MMCOT_CPU_ISA (the namespace of local_aggregation_cpu.h it defines) and
// includes this file after the headers below, under its own target
// options; local_aggregation_cpu.cpp picks one set at run time. Everything
// here but forward and backward has internal linkage and all of it lives in
// namespace MMCOT_CPU_ISA, so the copies never mix (a test checks that only
// the avx2 functions of the built module use AVX registers).
//
// Tasks: one per (sample n, block of consecutive weight groups), owning
// every channel c with c % G in the block across all heads, so each task
// writes disjoint slices of the output, grad_input and grad_weight: no
// atomics, and the reductions run in a fixed order (deterministic, and the
// same for any number of threads).
//
// The window geometry is planned once per call as segments: runs of output
// positions whose tap reads input positions at a fixed stride. With stride 1
// and an output as large as the input (CoTNet's windows), a tap shifts the
// flattened plane by a constant, so one segment covers the whole plane and a
// column mask drops the positions whose shifted column leaves the image:
// vectorisable loops as long as the plane. Otherwise a segment is the valid
// part of one output row. On a centred 3 x 3 window (a CoT layer's) the
// kernels replace the segments. With 8 channels a weight group (CoTNet's)
// on a plane of a vector or more (centred_group_window), the group kernels
// sum a group's 8 channels at once: per vector of positions, the 9 weight
// vectors, those of taps outside the image zeroed, are loaded once for
// the 8 channels (forward, input gradient) or the 9 weight gradient sums
// stay in registers over them (aggregate_group_tile,
// backward_centred_group_task); tiles read their planes in place but at
// the plane's two ends (group_tile_end). Otherwise, on planes of
// kMinCentredPlane positions or more (centred_window), every output and
// gradient element is summed in a register over all its terms, channel by
// channel, in tiles of the flattened plane, reading zero-padded copies of
// a tile only near the plane's first and last rows (aggregate_centred,
// backward_centred_task).
//
// The channels-last forward and backward (forward_channels_last,
// backward_channels_last: what a channels-last model runs) have one task
// per row instead, each pixel's channels contiguous: no copy of the
// values, the weights or the gradients into planes and back.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "local_aggregation_cpu.h"

#ifndef MMCOT_CPU_ISA
#error "define MMCOT_CPU_ISA before including local_aggregation_cpu_kernels.h"
#endif

namespace mmcot {
namespace cpu {
namespace MMCOT_CPU_ISA {
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

  // For a flat plan: whether window column j of output position p lies in
  // the image, for every p of the plane.
  const uint8_t* column_mask(int64_t j) const { return column_masks_[j]; }

 private:
  void plan_flat(const LocalAggregationShape& s) {
    masks_.assign((s.kernel_w + 1) * s.out_plane(), 1);
    const uint8_t* all_valid = masks_.data() + s.kernel_w * s.out_plane();
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const int64_t dx = j * s.dilation_w - s.pad_w;
      const int64_t x0 = first_inside(dx, 1);
      const int64_t x1 = end_inside(dx, 1, s.width, s.out_width);
      const bool wraps = x0 > 0 || x1 < s.out_width;
      uint8_t* mask = masks_.data() + (wraps ? j : s.kernel_w) * s.out_plane();
      for (int64_t p = 0; wraps && p < s.out_plane(); ++p) {
        const int64_t x = p % s.out_width;
        mask[p] = x >= x0 && x < x1;
      }
      column_masks_.push_back(mask);
    }
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
        const uint8_t* mask = column_masks_[j];
        segments_.push_back({i * s.kernel_w + j, begin,
                             begin + dy * s.width + dx, end - begin, 1,
                             mask != all_valid ? mask + begin : nullptr});
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
  std::vector<const uint8_t*> column_masks_;
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

// The consecutive weight groups [begin, end) of sample n. A task visits
// their channels in memory order: c = j * G + g for j = 0 .. C/G - 1, then g.
struct GroupBlock {
  int64_t n, begin, end;
};

// The kernels visit output positions in tiles of up to this many. Channel
// by channel (forward_task, backward_centred_task), so that on a large
// plane (where a task holds one group: see kGroupBlockBytes) the tile's
// K*K weight rows, read once from memory, stay in L2 while the C/G
// channels sharing them are aggregated; a whole-plane pass per channel
// read a detection-size group's megabytes of weights C/G times. (The
// tests' tiled planes, CPU_TILE, assume this value.)
constexpr int64_t kTilePositions = 2048;

// The channels sharing one group's weights in CoTNet (share_planes), for
// which some kernels unroll their loop over a group's channels.
constexpr int64_t kChannelsPerGroup = 8;

// Where a task reads the weights of its block's groups: group g of head
// `head` at at(head, g), its taps then positions contiguous. Either the
// weight tensor itself (in_tensor) or the block's normalised copy
// (normalize_block).
template <typename T>
struct BlockWeights {
  const T* first;  // group `first_group` of head 0
  int64_t first_group, head_stride;
  int64_t group_stride;  // taps * positions

  static BlockWeights in_tensor(const LocalAggregationShape& s,
                                const T* weight, const GroupBlock& block) {
    return {weight + s.weight_offset(block.n, 0, block.begin, 0), block.begin,
            s.groups * s.taps() * s.out_plane(), s.taps() * s.out_plane()};
  }
  const T* at(int64_t head, int64_t g) const {
    return first + head * head_stride + (g - first_group) * group_stride;
  }
};

// The part of seg whose output positions lie in [begin, end); false if none.
inline bool clip_segment(const Segment& seg, int64_t begin, int64_t end,
                         Segment* part) {
  const int64_t first = std::max(begin, seg.out_begin);
  const int64_t last = std::min(end, seg.out_begin + seg.length);
  if (last <= first) return false;
  const int64_t skipped = first - seg.out_begin;
  *part = {seg.tap, first, seg.in_begin + skipped * seg.in_stride,
           last - first, seg.in_stride,
           seg.valid != nullptr ? seg.valid + skipped : nullptr};
  return true;
}

// out[p] = sum over the segments' taps of w[tap plane, p] * v[input of p],
// summed in plan order, for the output positions p in [begin, end).
template <typename T>
void aggregate_segments(const LocalAggregationShape& s, const WindowPlan& plan,
                        const T* w, const T* v, T* out, int64_t begin,
                        int64_t end) {
  std::fill(out + begin, out + end, T(0));
  Segment part;
  for (const Segment& seg : plan.segments()) {
    if (!clip_segment(seg, begin, end, &part)) continue;
    multiply_add<false>(out + part.out_begin,
                        w + part.tap * s.out_plane() + part.out_begin,
                        v + part.in_begin, part);
  }
}

// Planes of fewer output positions do not take the tiled kernels of a
// centred window: there every tile needs zero-padded copies, which cost
// more than the register sums save (14 x 14, caches flushed: 0.67-0.73x
// the segment kernels' speed forward, 0.81-0.89x backward on an AVX2 EPYC;
// 28 x 28 and larger gain).
constexpr int64_t kMinCentredPlane = 512;

// A 3 x 3 window centred on each output position of a plane as large as
// the input (a CoT layer's).
inline bool centred_geometry(const LocalAggregationShape& s) {
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 &&
         s.stride_w == 1 && s.pad_h == s.dilation_h &&
         s.pad_w == s.dilation_w && s.out_height == s.height &&
         s.out_width == s.width;
}

// Whether the kernels for a centred window apply: its geometry on a plane
// large enough.
inline bool centred_window(const LocalAggregationShape& s) {
  return s.out_plane() >= kMinCentredPlane && centred_geometry(s);
}

// A centred window on the flattened plane: tap t = i * 3 + j of position p
// reads p + shift[t]; tiles padded by margin on both sides (padded_tiles)
// hold every position a tile's taps read, and a column mask drops the taps
// whose column leaves the image (the flattened shift wraps across rows).
// The taps of window row 0 read inside the image from position top on,
// those of row 2 before position bottom. The kernels skip the taps of a row
// outside the image and mask those of a column outside it, as the segment
// and CUDA kernels do: no term for a tap outside the image (the zero
// padding would turn an inf weight or gradient there into NaN).
struct CentredWindow {
  static constexpr int64_t kKernel = 3, kTaps = 9;
  int64_t margin, top, bottom;
  int64_t shift[kTaps];

  explicit CentredWindow(const LocalAggregationShape& s)
      : margin(s.pad_h * s.width + s.pad_w),
        top(s.dilation_h * s.width),
        bottom(s.out_plane() - s.dilation_h * s.width) {
    for (int64_t i = 0; i < kKernel; ++i) {
      for (int64_t j = 0; j < kKernel; ++j) {
        shift[i * kKernel + j] =
            (i - 1) * s.dilation_h * s.width + (j - 1) * s.dilation_w;
      }
    }
  }

  // Where tap t of position k of a padded tile (padded_tiles) reads.
  int64_t read(int64_t t) const { return margin + shift[t]; }

  // Calls f(Rows<kRow0, kRow2>(), from, to) for the pieces [from, to) of
  // [begin, end) on which window rows 0 and 2 are each wholly inside
  // (true) or outside the image.
  template <typename F>
  void for_each_row_span(int64_t begin, int64_t end, const F& f) const;
};

// Which window rows are inside the image on a piece of for_each_row_span.
template <bool kRow0, bool kRow2>
struct Rows {
  static constexpr bool inside(int64_t i) {
    return i == 1 || (i == 0 && kRow0) || (i == 2 && kRow2);
  }
};

template <typename F>
void CentredWindow::for_each_row_span(int64_t begin, int64_t end,
                                      const F& f) const {
  const int64_t cuts[4] = {begin,
                           std::clamp(std::min(top, bottom), begin, end),
                           std::clamp(std::max(top, bottom), begin, end), end};
  for (int64_t piece = 0; piece < 3; ++piece) {
    const int64_t from = cuts[piece], to = cuts[piece + 1];
    if (to <= from) continue;
    const bool row0 = from >= top, row2 = from < bottom;
    if (row0 && row2) {
      f(Rows<true, true>(), from, to);
    } else if (row0) {
      f(Rows<true, false>(), from, to);
    } else if (row2) {
      f(Rows<false, true>(), from, to);
    } else {
      f(Rows<false, false>(), from, to);
    }
  }
}

// The same sums for a centred window over the output positions
// [begin, end) of a piece of for_each_row_span: all the taps of a position
// summed in a register, in plan order, and the output written once (not
// read and written once a tap). `padded` is the input tile (padded_tiles)
// from position begin.
template <typename RowsInside, typename T>
void aggregate_centred(RowsInside, const LocalAggregationShape& s,
                       const WindowPlan& plan,
                       const CentredWindow& window, const T* __restrict__ w,
                       const T* __restrict__ padded, T* __restrict__ out,
                       int64_t begin, int64_t end) {
  constexpr int64_t kKernel = CentredWindow::kKernel;
  int64_t reads[CentredWindow::kTaps];
  for (int64_t t = 0; t < CentredWindow::kTaps; ++t) reads[t] = window.read(t);
  const uint8_t* __restrict__ masks[kKernel];
  for (int64_t j = 0; j < kKernel; ++j) {
    masks[j] = plan.column_mask(j) + begin;
  }
  const int64_t plane = s.out_plane(), length = end - begin;
  w += begin;
  out += begin;
  for (int64_t k = 0; k < length; ++k) {
    bool valid[kKernel];
#pragma GCC unroll 4
    for (int64_t j = 0; j < kKernel; ++j) valid[j] = masks[j][k] != 0;
    T sum = 0;
#pragma GCC unroll 4
    for (int64_t i = 0; i < kKernel; ++i) {
      if (!RowsInside::inside(i)) continue;
#pragma GCC unroll 4
      for (int64_t j = 0; j < kKernel; ++j) {
        const int64_t t = i * kKernel + j;
        const T product = w[t * plane + k] * padded[k + reads[t]];
        sum += valid[j] ? product : T(0);
      }
    }
    out[k] = sum;
  }
}

// The positions [begin - margin, end + margin) of `planes` planes of a
// centred window's out_plane positions, the first at v, the next
// plane_stride apart: in place (from v + begin - margin) where they lie
// inside the planes, otherwise copies in scratch with zeros beyond the
// planes; *stride (if given) says how far apart the returned planes are.
template <typename T>
const T* padded_tiles(const LocalAggregationShape& s,
                      const CentredWindow& window, const T* v,
                      int64_t plane_stride, int64_t planes, int64_t begin,
                      int64_t end, std::vector<T>* scratch,
                      int64_t* stride = nullptr) {
  const int64_t first = begin - window.margin, last = end + window.margin;
  if (first >= 0 && last <= s.out_plane()) {
    if (stride != nullptr) *stride = plane_stride;
    return v + first;
  }
  const int64_t copy_begin = std::max<int64_t>(first, 0);
  const int64_t copy_end = std::min(last, s.out_plane());
  const int64_t copy_stride = last - first;
  if (stride != nullptr) *stride = copy_stride;
  scratch->resize(planes * copy_stride);
  for (int64_t plane = 0; plane < planes; ++plane) {
    T* to = scratch->data() + plane * copy_stride;
    const T* from = v + plane * plane_stride;
    std::fill(to, to + (copy_begin - first), T(0));
    std::copy(from + copy_begin, from + copy_end, to + (copy_begin - first));
    std::fill(to + (copy_end - first), to + (last - first), T(0));
  }
  return scratch->data();
}

// aggregate_centred over the output positions [begin, end) of a tile, in
// the pieces of for_each_row_span; `padded` is the input tile
// (padded_tiles) from position begin.
template <typename T>
void aggregate_centred_tile(const LocalAggregationShape& s,
                            const WindowPlan& plan,
                            const CentredWindow& window, const T* w,
                            const T* padded, T* out, int64_t begin,
                            int64_t end) {
  window.for_each_row_span(begin, end,
                           [&](auto rows, int64_t from, int64_t to) {
                             aggregate_centred(rows, s, plan, window, w,
                                               padded + (from - begin), out,
                                               from, to);
                           });
}

// output[n, head*C + c] for every channel c of the block's groups, one tile
// of output positions at a time, within it the channels in memory order.
// Each output sums its taps in plan order, whatever the tiling.
template <typename T>
void forward_task(const LocalAggregationShape& s, const WindowPlan& plan,
                  const T* input, const BlockWeights<T>& weights, T* output,
                  const GroupBlock& block) {
  const int64_t plane = s.out_plane();
  const bool centred = centred_window(s);
  const CentredWindow window(s);
  std::vector<T> scratch;
  for (int64_t head = 0; head < s.heads; ++head) {
    for (int64_t begin = 0; begin < plane; begin += kTilePositions) {
      const int64_t end = std::min(begin + kTilePositions, plane);
      for (int64_t c0 = 0; c0 < s.channels; c0 += s.groups) {
        for (int64_t g = block.begin; g < block.end; ++g) {
          const T* w = weights.at(head, g);
          T* out = output + s.output_offset(block.n, head, c0 + g);
          const T* v = input + s.input_offset(block.n, c0 + g);
          if (centred) {
            aggregate_centred_tile(
                s, plan, window, w,
                padded_tiles(s, window, v, 0, 1, begin, end, &scratch), out,
                begin, end);
          } else {
            aggregate_segments(s, plan, w, v, out, begin, end);
          }
        }
      }
    }
  }
}

// Both gradients in one pass over grad_output, channel by channel:
//   grad_weight[n, head, g, tap] = sum_{c % G == g} grad_output[n, head*C + c]
//                                  * window_tap(input[n, c]),
// summed over c in increasing order (deterministic), and
//   grad_input[n, c] = sum_{head, tap} scatter of weight * grad_output,
// the transpose of the forward gather. Every element either sum writes
// belongs to this task's groups only. Either pointer may be null.
template <typename T>
void backward_task(const LocalAggregationShape& s, const WindowPlan& plan,
                   const T* grad_output, const T* input, const T* weight,
                   T* grad_input, T* grad_weight, const GroupBlock& block) {
  const int64_t weight_plane = s.taps() * s.out_plane();
  if (grad_weight != nullptr) {
    for (int64_t head = 0; head < s.heads; ++head) {
      T* gw = grad_weight + s.weight_offset(block.n, head, block.begin, 0);
      std::fill(gw, gw + (block.end - block.begin) * weight_plane, T(0));
    }
  }
  for (int64_t c0 = 0; c0 < s.channels; c0 += s.groups) {
    for (int64_t g = block.begin; g < block.end; ++g) {
      const int64_t c = c0 + g;
      const T* v = input + s.input_offset(block.n, c);
      T* gv = grad_input == nullptr
                  ? nullptr
                  : grad_input + s.input_offset(block.n, c);
      if (gv != nullptr) std::fill(gv, gv + s.in_plane(), T(0));
      for (int64_t head = 0; head < s.heads; ++head) {
        const int64_t w_offset = s.weight_offset(block.n, head, g, 0);
        const T* gout = grad_output + s.output_offset(block.n, head, c);
        for (const Segment& seg : plan.segments()) {
          const int64_t at = w_offset + seg.tap * s.out_plane() + seg.out_begin;
          if (grad_weight != nullptr) {
            multiply_add<false>(grad_weight + at, gout + seg.out_begin,
                                v + seg.in_begin, seg);
          }
          if (gv != nullptr) {
            multiply_add<true>(gv + seg.in_begin, weight + at,
                               gout + seg.out_begin, seg);
          }
        }
      }
    }
  }
}

// gw[t * tap_stride + k] = sum over the 8 channels c of
// grads[c * grad_stride + k] * values[c * value_stride + k + read(t)] for
// the taps t inside the image at position begin + k (window row: the piece
// of for_each_row_span; column: the plan's column masks), else 0, for k in
// [0, end - begin): one group and head's weight gradient on a piece of a
// centred window's tile, each grad_output read once a window row.
template <typename RowsInside, typename T>
void weight_gradient_centred(RowsInside, const WindowPlan& plan,
                             const CentredWindow& window,
                             const T* __restrict__ grads, int64_t grad_stride,
                             const T* __restrict__ values,
                             int64_t value_stride, T* __restrict__ gw,
                             int64_t tap_stride, int64_t begin, int64_t end) {
  constexpr int64_t kKernel = CentredWindow::kKernel;
  const int64_t length = end - begin;
  const uint8_t* __restrict__ masks[kKernel];
  for (int64_t j = 0; j < kKernel; ++j) {
    masks[j] = plan.column_mask(j) + begin;
  }
  for (int64_t i = 0; i < kKernel; ++i) {  // a window row's taps at once
    T* __restrict__ row_gw = gw + i * kKernel * tap_stride;
    if (!RowsInside::inside(i)) {
      for (int64_t j = 0; j < kKernel; ++j) {
        std::fill(row_gw + j * tap_stride, row_gw + j * tap_stride + length,
                  T(0));
      }
      continue;
    }
    int64_t reads[kKernel];
    for (int64_t j = 0; j < kKernel; ++j) {
      reads[j] = window.read(i * kKernel + j);
    }
    for (int64_t k = 0; k < length; ++k) {
      T sums[kKernel] = {};
#pragma GCC unroll 8
      for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
        const T grad = grads[c * grad_stride + k];
#pragma GCC unroll 4
        for (int64_t j = 0; j < kKernel; ++j) {
          sums[j] += grad * values[c * value_stride + k + reads[j]];
        }
      }
#pragma GCC unroll 4
      for (int64_t j = 0; j < kKernel; ++j) {
        row_gw[j * tap_stride + k] = masks[j][k] != 0 ? sums[j] : T(0);
      }
    }
  }
}

// gv[k] (+)= sum over taps t of weights[t * weight_stride + k + margin -
// shift(t)] * grads[k + margin - shift(t)], summed from 0 where kFirst,
// the taps of window column j where column 2 - j of the position is in the
// image (masks: those of the tile): one head's share of a channel's input
// gradient over a tile of a centred window (backward_centred_task).
template <bool kFirst, typename T>
void input_gradient_centred(const CentredWindow& window,
                            const T* __restrict__ weights,
                            int64_t weight_stride,
                            const T* __restrict__ grads,
                            const uint8_t* const* tile_masks,
                            T* __restrict__ gv, int64_t length) {
  constexpr int64_t kKernel = CentredWindow::kKernel;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  int64_t weight_reads[kTaps], grad_reads[kTaps];
  for (int64_t t = 0; t < kTaps; ++t) {
    grad_reads[t] = window.margin - window.shift[t];
    weight_reads[t] = t * weight_stride + grad_reads[t];
  }
  const uint8_t* __restrict__ masks[kKernel];
  for (int64_t j = 0; j < kKernel; ++j) masks[j] = tile_masks[kKernel - 1 - j];
  for (int64_t k = 0; k < length; ++k) {
    bool valid[kKernel];
#pragma GCC unroll 4
    for (int64_t j = 0; j < kKernel; ++j) valid[j] = masks[j][k] != 0;
    T sum = kFirst ? T(0) : gv[k];
#pragma GCC unroll 16
    for (int64_t t = 0; t < kTaps; ++t) {
      const T product = weights[k + weight_reads[t]] * grads[k + grad_reads[t]];
      sum += valid[t % kKernel] ? product : T(0);
    }
    gv[k] = sum;
  }
}

// backward_task for a centred window with C = 8 G (CoTNet's), in tiles of
// output positions as the forward: each gradient element summed in a
// register over what backward_task adds to it, in the same order, and
// written once.
//   grad_weight[n, head, g, t, p] = sum over the 8 channels c of g of
//       grad_output[n, head*C + c, p] * input[n, c, p + shift(t)];
//   grad_input[n, c, q] = sum over heads and taps t of
//       weight[n, head, g, t, q - shift(t)] * grad_output[.., q - shift(t)],
// where tap (i, j) of the output q - shift(t) reads inside the image iff
// column (2 - j) of q does; where q - shift(t) leaves the plane, both
// factors are the zero padding.
template <typename T>
void backward_centred_task(const LocalAggregationShape& s,
                           const WindowPlan& plan, const T* grad_output,
                           const T* input, const T* weight, T* grad_input,
                           T* grad_weight, const GroupBlock& block) {
  constexpr int64_t kKernel = CentredWindow::kKernel;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const CentredWindow window(s);
  const int64_t plane = s.out_plane();
  std::vector<T> scratch[3];
  for (int64_t begin = 0; begin < plane; begin += kTilePositions) {
    const int64_t end = std::min(begin + kTilePositions, plane);
    const int64_t length = end - begin;
    const uint8_t* masks[kKernel];
    for (int64_t j = 0; j < kKernel; ++j) {
      masks[j] = plan.column_mask(j) + begin;
    }
    for (int64_t g = block.begin; g < block.end; ++g) {
      if (grad_weight != nullptr) {
        int64_t value_stride;
        const T* values = padded_tiles(
            s, window, input + s.input_offset(block.n, g),
            s.groups * s.in_plane(), kChannelsPerGroup, begin, end,
            &scratch[0], &value_stride);
        for (int64_t head = 0; head < s.heads; ++head) {
          const T* grads = grad_output + s.output_offset(block.n, head, g);
          T* gw = grad_weight + s.weight_offset(block.n, head, g, 0);
          window.for_each_row_span(
              begin, end, [&](auto rows, int64_t from, int64_t to) {
                weight_gradient_centred(rows, plan, window, grads + from,
                                        s.groups * plane,
                                        values + (from - begin), value_stride,
                                        gw + from, plane, from, to);
              });
        }
      }
      if (grad_input != nullptr) {
        for (int64_t head = 0; head < s.heads; ++head) {
          int64_t weight_stride;
          const T* weights = padded_tiles(
              s, window, weight + s.weight_offset(block.n, head, g, 0), plane,
              kTaps, begin, end, &scratch[1], &weight_stride);
          for (int64_t j = 0; j < kChannelsPerGroup; ++j) {
            const int64_t c = j * s.groups + g;
            const T* grads = padded_tiles(
                s, window, grad_output + s.output_offset(block.n, head, c), 0,
                1, begin, end, &scratch[2]);
            T* gv = grad_input + s.input_offset(block.n, c) + begin;
            if (head == 0) {
              input_gradient_centred<true>(window, weights, weight_stride,
                                           grads, masks, gv, length);
            } else {
              input_gradient_centred<false>(window, weights, weight_stride,
                                            grads, masks, gv, length);
            }
          }
        }
      }
    }
  }
}

// Weight planes of the groups one task handles stay within this budget
// (a share of L2), so that small planes are visited in memory order while
// the weights they reuse stay cached; a 56 x 56 plane is one group a task.
constexpr int64_t kGroupBlockBytes = 64 * 1024;

// Runs task(block) for every (sample, block of consecutive groups), in
// parallel. Blocks are as large as kGroupBlockBytes allows and of equal
// size, with at least as many blocks as threads; no two share an output.
template <typename T, typename Task>
void for_each_group_block(const LocalAggregationShape& s, const Task& task) {
  const int64_t group_bytes =
      s.heads * s.taps() * s.out_plane() * static_cast<int64_t>(sizeof(T));
  int64_t blocks = (s.groups * group_bytes + kGroupBlockBytes - 1) /
                   kGroupBlockBytes;
  const int64_t threads = at::get_num_threads();
  blocks = std::max(blocks, (threads + s.batch - 1) / s.batch);
  blocks = std::min(std::max<int64_t>(blocks, 1), s.groups);
  const int64_t size = (s.groups + blocks - 1) / blocks;
  blocks = (s.groups + size - 1) / size;
  at::parallel_for(0, s.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t first = (t % blocks) * size;
      task(GroupBlock{t / blocks, first, std::min(first + size, s.groups)});
    }
  });
}

// Channels-last layouts: input (N, H, W, C), weight pixel-major
// (N, H', W', heads, G, K*K), output (N, H', W', heads*C). Per output pixel
// and head, the weights are transposed to tap-major (K*K, G), so that the
// weights of consecutive groups, those of consecutive channels c = j*G + g,
// lie together. With C = 8 G (CoTNet's share_planes) a block of kLanes
// groups is summed over the window in 8 vector registers, one load of its
// weights serving the 8 channels j*G + g of each group.
// A 256-bit vector of T (GCC / Clang vector extensions: one register with
// AVX2, two with the base instruction set).
template <typename T>
struct Vector;
template <>
struct Vector<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef int32_t mask __attribute__((vector_size(32)));  // 0 or -1
};
template <>
struct Vector<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef int64_t mask __attribute__((vector_size(32)));
};

template <typename T>
constexpr int64_t kLanes = 32 / sizeof(T);

template <typename V, typename T>
inline V load_vector(const T* from) {
  V v;
  std::memcpy(&v, from, sizeof(V));
  return v;
}

// out[j * G + l] = sum_t weights[t][l] * values[t][j * G + l] for the 8
// channels j and kLanes groups l of one block.
template <typename T>
inline void aggregate_group_block(T* __restrict__ out,
                                  const T* const* __restrict__ values,
                                  const T* const* __restrict__ weights,
                                  int64_t taps, int64_t groups) {
  using V = typename Vector<T>::type;
  V acc[kChannelsPerGroup];
#pragma GCC unroll 8
  for (int64_t j = 0; j < kChannelsPerGroup; ++j) acc[j] = V{};
  for (int64_t t = 0; t < taps; ++t) {
    const V w = load_vector<V>(weights[t]);
    const T* v = values[t];
#pragma GCC unroll 8
    for (int64_t j = 0; j < kChannelsPerGroup; ++j) {
      acc[j] += w * load_vector<V>(v + j * groups);
    }
  }
#pragma GCC unroll 8
  for (int64_t j = 0; j < kChannelsPerGroup; ++j) {
    std::memcpy(out + j * groups, &acc[j], sizeof(V));
  }
}

// aggregate_group_block for every block of kLanes groups in [0, block_end),
// `values` and `weights` (the taps' pointers at group 0) stepped along the
// blocks and left as they were given.
template <typename T>
inline void aggregate_group_blocks(T* out, const T** values,
                                   const T** weights, int64_t taps,
                                   int64_t groups, int64_t block_end) {
  for (int64_t g = 0; g < block_end; g += kLanes<T>) {
    aggregate_group_block(out + g, values, weights, taps, groups);
    for (int64_t t = 0; t < taps; ++t) {
      values[t] += kLanes<T>;
      weights[t] += kLanes<T>;
    }
  }
  for (int64_t t = 0; t < taps; ++t) {
    values[t] -= block_end;
    weights[t] -= block_end;
  }
}

// Row and column of each lane of a vector of kLanes consecutive positions
// of a plane `width` wide.
template <typename T>
struct LanePositions {
  using Index = typename Vector<T>::mask;
  using Lane = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  Index row, column;

  // the vector at p; `row_ends` as for advance
  void start(int64_t p, int64_t width, int64_t row_ends) {
    row = Index{} + static_cast<Lane>(p / width);
    for (int64_t l = 0; l < kLanes<T>; ++l) {
      column[l] = static_cast<Lane>(p % width + l);
    }
    wrap(width, row_ends);
  }
  // kLanes positions on: a step crosses at most `row_ends` row ends,
  // ceil(kLanes / width)
  void advance(int64_t width, int64_t row_ends) {
    column += static_cast<Lane>(kLanes<T>);
    wrap(width, row_ends);
  }

 private:
  // columns past the row's end moved to the next rows, up to row_ends rows
  void wrap(int64_t width, int64_t row_ends) {
    for (int64_t k = 0; k < row_ends; ++k) {
      const Index past_end = column >= static_cast<Lane>(width);  // 0 or -1
      column -= past_end & static_cast<Lane>(width);
      row -= past_end;
    }
  }
};

// For a vector of positions of a centred window, lane by lane: whether
// window row 0 (up) and row 2 (down), column 0 (left) and column 2 (right)
// lie in the image (0 or -1).
template <typename T>
struct WindowSides {
  using Mask = typename Vector<T>::mask;
  using Lane = typename LanePositions<T>::Lane;
  Mask first_row, end_row, first_column, end_column;

  explicit WindowSides(const LocalAggregationShape& s)
      : first_row(Mask{} + static_cast<Lane>(s.dilation_h)),
        end_row(Mask{} + static_cast<Lane>(s.height - s.dilation_h)),
        first_column(Mask{} + static_cast<Lane>(s.dilation_w)),
        end_column(Mask{} + static_cast<Lane>(s.width - s.dilation_w)) {}

  Mask up(const LanePositions<T>& at) const { return at.row >= first_row; }
  Mask down(const LanePositions<T>& at) const { return at.row < end_row; }
  Mask left(const LanePositions<T>& at) const {
    return at.column >= first_column;
  }
  Mask right(const LanePositions<T>& at) const {
    return at.column < end_column;
  }
  // tap t = i * 3 + j inside the image, for the 9 taps
  void taps(const LanePositions<T>& at, Mask* inside) const {
    const Mask u = up(at), d = down(at), l = left(at), r = right(at);
    const Mask all = ~Mask{};
    const Mask rows[3] = {u, all, d}, columns[3] = {l, all, r};
    for (int64_t t = 0; t < CentredWindow::kTaps; ++t) {
      inside[t] = rows[t / 3] & columns[t % 3];
    }
  }
};

// Calls f(p, positions) for vectors of kLanes positions p covering
// [begin, end) (end - begin >= kLanes), the last one
// ending at `end` (recomputing some positions when the range is not whole
// vectors); positions: the row and column of each lane.
template <typename T, typename F>
inline void for_each_position_vector(int64_t width, int64_t begin,
                                     int64_t end, const F& f) {
  const int64_t row_ends = (kLanes<T> + width - 1) / width;
  LanePositions<T> at;
  at.start(begin, width, row_ends);
  for (int64_t m = begin; m < end; m += kLanes<T>) {
    int64_t p = m;
    if (m + kLanes<T> > end) {
      p = end - kLanes<T>;
      at.start(p, width, row_ends);
    }
    f(p, at);
    at.advance(width, row_ends);
  }
}

template <typename T>
bool any_lane(const typename Vector<T>::mask& mask) {
  for (int64_t l = 0; l < kLanes<T>; ++l) {
    if (mask[l] != 0) return true;
  }
  return false;
}

// Where the 9 taps t = i * 3 + j of a centred window read from a
// position: window row i at offset row[i], its three columns `step` apart
// (kStep where that is not 0, a constant the loads take as displacements:
// three registers for nine offsets).
template <int64_t kStep>
struct TapReads {
  int64_t row[3];
  int64_t step;

  TapReads(int64_t first, int64_t row_step, int64_t column_step)
      : row{first, first + row_step, first + 2 * row_step},
        step(column_step) {}
  int64_t operator()(int64_t t) const {
    return row[t / 3] + (t % 3) * (kStep != 0 ? kStep : step);
  }
};

// Calls f(TapReads<kStep>(...)) with kStep = column_step where that is 1
// or -1 (CoTNet's windows), else 0.
template <typename F>
inline void with_tap_reads(int64_t first, int64_t row_step,
                           int64_t column_step, const F& f) {
  if (column_step == 1) {
    f(TapReads<1>(first, row_step, 1));
  } else if (column_step == -1) {
    f(TapReads<-1>(first, row_step, -1));
  } else {
    f(TapReads<0>(first, row_step, column_step));
  }
}

// The reads of a padded tile from `begin` (padded_tiles) for the forward
// and the weight gradient (sign 1: tap t reads window.read(t)), or for the
// input gradient (sign -1: the mirrored window, margin - shift[t]).
template <typename F>
inline void with_window_reads(const LocalAggregationShape& s,
                              const CentredWindow& window, int64_t sign,
                              int64_t begin, const F& f) {
  with_tap_reads(window.margin + sign * window.shift[0] - begin,
                 sign * s.dilation_h * s.width, sign * s.dilation_w, f);
}

// How sum_group_channels visits a group's 8 channels: one at a time, or
// all 8 unrolled. Unrolled, the compiler hoists their 72 read offsets out
// of the caller's loop over a tile and spills them, a stack load a
// multiply-add: on planes of 7 x 7 and 14 x 14 (and in the input
// gradient) that made the sums 1.1-1.3x slower, while on large planes
// from memory the forward was 1.1-1.2x faster unrolled (caches flushed,
// an AVX-512 EPYC). kUnrolledForwardPlane is where the forward unrolls.
enum class Channels { kOneByOne, kUnrolled };
constexpr int64_t kUnrolledForwardPlane = 512;

// out[c * out_stride + l] = sum over the 9 taps t of weights[t][l] *
// values[c * value_stride + reads(t) + l] for the 8 channels c of a group
// and the kLanes lanes l, summed in tap order; *nan gains the lanes of the
// sums that are NaN.
template <Channels kChannels, typename T, typename Reads>
inline void sum_group_channels(const typename Vector<T>::type* weights,
                               const T* __restrict__ values,
                               int64_t value_stride, const Reads& reads,
                               T* __restrict__ out, int64_t out_stride,
                               typename Vector<T>::mask* nan) {
  using V = typename Vector<T>::type;
  auto sum_channel = [&](int64_t c) {
    const T* v = values + c * value_stride;
    V sum{};
#pragma GCC unroll 9
    for (int64_t t = 0; t < CentredWindow::kTaps; ++t) {
      sum += weights[t] * load_vector<V>(v + reads(t));
    }
    *nan |= sum != sum;
    std::memcpy(out + c * out_stride, &sum, sizeof(V));
  };
  if constexpr (kChannels == Channels::kUnrolled) {
#pragma GCC unroll 8
    for (int64_t c = 0; c < kChannelsPerGroup; ++c) sum_channel(c);
  } else {
#pragma GCC unroll 1
    for (int64_t c = 0; c < kChannelsPerGroup; ++c) sum_channel(c);
  }
}

// out[c * out_stride + p] = sum over the taps t of w[t * plane + p] *
// values[c * value_stride + p - begin + window.read(t)] for the 8 channels
// c of a group and the positions p in [begin, end) of a centred window
// (end - begin >= kLanes): a vector of positions of the 8
// channels at once, the 9 weight vectors loaded once for the 8 channels
// with the taps outside the image zeroed (their rows and columns
// computed in registers), then one fused multiply-add a tap and channel.
// `values` is the padded tile of channel 0 (padded_tiles). A zeroed weight
// times an input read across a row end (a flattened shift wraps there)
// adds nothing unless that input is inf or NaN; then the sum is NaN, so the
// function returns false when any sum is NaN, and the caller recomputes
// the tile tap by tap (a NaN from the inputs' own terms also takes that
// path, which gives the same NaN).
template <Channels kChannels, typename T>
bool aggregate_group_tile(const LocalAggregationShape& s,
                          const CentredWindow& window,
                          const T* __restrict__ w,
                          const T* __restrict__ values, int64_t value_stride,
                          T* __restrict__ out, int64_t out_stride,
                          int64_t begin, int64_t end) {
  using V = typename Vector<T>::type;
  using Mask = typename Vector<T>::mask;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const int64_t plane = s.out_plane();
  const WindowSides<T> sides(s);
  Mask nan{};
  with_window_reads(s, window, 1, begin, [&](const auto& reads) {
    for_each_position_vector<T>(
        s.width, begin, end, [&](int64_t p, const LanePositions<T>& at) {
          Mask inside[kTaps];
          sides.taps(at, inside);
          V weights[kTaps];
#pragma GCC unroll 9
          for (int64_t t = 0; t < kTaps; ++t) {
            weights[t] =
                inside[t] ? load_vector<V>(w + t * plane + p) : V{};
          }
          sum_group_channels<kChannels>(weights, values + p, value_stride,
                                        reads, out + p, out_stride, &nan);
        });
  });
  return !any_lane<T>(nan);
}

// Whether the group kernels apply: a centred window with C = 8 G on a
// plane of a vector or more.
template <typename T>
bool centred_group_window(const LocalAggregationShape& s) {
  return centred_geometry(s) && s.out_plane() >= kLanes<T> &&
         s.channels == kChannelsPerGroup * s.groups;
}

// The end of the tile of a centred window's plane that starts at `begin`,
// for the group kernels: a tile at each end of the plane, [0, edge) and
// [plane - edge, plane), as short as their reads beyond the plane allow
// (those padded_tiles copies with zeros), and between them tiles of up to
// kTilePositions that read their planes in place; every tile at least a
// vector long (a plane too short for three such tiles is one). A plane of
// kSingleTilePlane positions or fewer is one tile too: there the three
// tiles' setup cost more than copying the whole plane (7 x 7: 1.14x faster
// forward, 1.12x backward; 14 x 14 as one tile: 1.08x slower backward).
constexpr int64_t kSingleTilePlane = 64;
template <typename T>
int64_t group_tile_end(const CentredWindow& window, int64_t plane,
                       int64_t begin) {
  const int64_t edge = std::max(window.margin, kLanes<T>);
  const int64_t last = plane - edge;
  if (last - edge < kLanes<T> || plane <= kSingleTilePlane) return plane;
  if (begin == 0) return edge;
  if (begin >= last) return plane;
  const int64_t end = begin + kTilePositions;
  return end + kLanes<T> > last ? last : end;
}

// forward_task for centred_group_window: per head and group of the block,
// tile by tile (group_tile_end), the group's 8 channels at once
// (aggregate_group_tile); a tile with a NaN sum again channel by channel,
// as forward_task does.
template <typename T>
void forward_centred_group_task(const LocalAggregationShape& s,
                                const WindowPlan& plan, const T* input,
                                const BlockWeights<T>& weights, T* output,
                                const GroupBlock& block) {
  const int64_t plane = s.out_plane();
  const int64_t channel_stride = s.groups * plane;  // c = j * G + g
  const CentredWindow window(s);
  std::vector<T> scratch;
  for (int64_t head = 0; head < s.heads; ++head) {
    for (int64_t g = block.begin; g < block.end; ++g) {
      const T* w = weights.at(head, g);
      T* out = output + s.output_offset(block.n, head, g);
      for (int64_t begin = 0, end = 0; begin < plane; begin = end) {
        end = group_tile_end<T>(window, plane, begin);
        int64_t value_stride;
        const T* padded = padded_tiles(
            s, window, input + s.input_offset(block.n, g), channel_stride,
            kChannelsPerGroup, begin, end, &scratch, &value_stride);
        const bool finite =
            plane >= kUnrolledForwardPlane
                ? aggregate_group_tile<Channels::kUnrolled>(
                      s, window, w, padded, value_stride, out,
                      channel_stride, begin, end)
                : aggregate_group_tile<Channels::kOneByOne>(
                      s, window, w, padded, value_stride, out,
                      channel_stride, begin, end);
        if (finite) continue;
        for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
          aggregate_centred_tile(s, plan, window, w, padded + c * value_stride,
                                 out + c * channel_stride, begin, end);
        }
      }
    }
  }
}

// gw[t * plane + p] = sum over the 8 channels c of a group of
// grads[c * grad_stride + p] * values[c * value_stride + p - begin +
// window.read(t)] where tap t of position p is inside the image, else 0,
// for the positions p in [begin, end) (as aggregate_group_tile): one head's
// weight gradient of a group over a tile, the 9 taps' sums in registers,
// each grad_output vector loaded once. `values`: the group's padded tile.
template <typename T>
void weight_gradient_group_tile(const LocalAggregationShape& s,
                                const CentredWindow& window,
                                const T* __restrict__ grads,
                                int64_t grad_stride,
                                const T* __restrict__ values,
                                int64_t value_stride, T* __restrict__ gw,
                                int64_t begin, int64_t end) {
  using V = typename Vector<T>::type;
  using Mask = typename Vector<T>::mask;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const int64_t plane = s.out_plane();
  const WindowSides<T> sides(s);
  with_window_reads(s, window, 1, begin, [&](const auto& reads) {
    for_each_position_vector<T>(
        s.width, begin, end, [&](int64_t p, const LanePositions<T>& at) {
          V sums[kTaps] = {};
#pragma GCC unroll 8
          for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
            const V grad = load_vector<V>(grads + c * grad_stride + p);
            const T* v = values + c * value_stride + p;
#pragma GCC unroll 9
            for (int64_t t = 0; t < kTaps; ++t) {
              sums[t] += grad * load_vector<V>(v + reads(t));
            }
          }
          Mask inside[kTaps];
          sides.taps(at, inside);
#pragma GCC unroll 9
          for (int64_t t = 0; t < kTaps; ++t) {
            const V kept = inside[t] ? sums[t] : V{};
            std::memcpy(gw + t * plane + p, &kept, sizeof(V));
          }
        });
  });
}

// gv[c * gv_stride + q] = sum over the taps t = i * 3 + j of
// weights[t * weight_stride + q - begin + margin - shift(t)] *
// grads[c * grad_stride + q - begin + margin - shift(t)], the taps whose
// column 2 - j of q is in the image, for the 8 channels c of a group and
// the positions q in [begin, end): a one-head group's input gradient over a
// tile, from the padded tiles of its 9 weight planes and of its channels'
// output gradients. The 9 weight vectors of a position vector, those of
// the other taps zeroed, serve the 8 channels; as in aggregate_group_tile,
// an inf or NaN gradient read across a row end makes a NaN sum, and then
// the function returns false (the caller recomputes the tile).
template <typename T>
bool input_gradient_group_tile(const LocalAggregationShape& s,
                               const CentredWindow& window,
                               const T* __restrict__ weights,
                               int64_t weight_stride,
                               const T* __restrict__ grads,
                               int64_t grad_stride, T* __restrict__ gv,
                               int64_t gv_stride, int64_t begin,
                               int64_t end) {
  using V = typename Vector<T>::type;
  using Mask = typename Vector<T>::mask;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const WindowSides<T> sides(s);
  Mask nan{};
  with_window_reads(s, window, -1, begin, [&](const auto& reads) {
    for_each_position_vector<T>(
        s.width, begin, end, [&](int64_t p, const LanePositions<T>& at) {
          // tap column j needs column 2 - j of q
          const Mask all = ~Mask{};
          const Mask columns[3] = {sides.right(at), all, sides.left(at)};
          V w[kTaps];
#pragma GCC unroll 9
          for (int64_t t = 0; t < kTaps; ++t) {
            w[t] = columns[t % 3]
                       ? load_vector<V>(weights + t * weight_stride + p +
                                        reads(t))
                       : V{};
          }
          sum_group_channels<Channels::kOneByOne>(
              w, grads + p, grad_stride, reads, gv + p, gv_stride, &nan);
        });
  });
  return !any_lane<T>(nan);
}

// Whether backward_centred_group_task applies: centred_group_window with
// one head (a CoT layer's).
template <typename T>
bool centred_group_backward(const LocalAggregationShape& s) {
  return centred_group_window<T>(s) && s.heads == 1;
}

// backward_task for centred_group_backward: per group of the block, in the
// forward's tiles, the weight gradient of the group's 8 channels and their
// input gradient, each element summed in a register and written once (a
// tile whose input gradient has a NaN sum again channel by channel, as
// backward_centred_task computes it).
template <typename T>
void backward_centred_group_task(const LocalAggregationShape& s,
                                 const WindowPlan& plan,
                                 const T* grad_output, const T* input,
                                 const T* weight, T* grad_input,
                                 T* grad_weight, const GroupBlock& block) {
  constexpr int64_t kKernel = CentredWindow::kKernel;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const CentredWindow window(s);
  const int64_t plane = s.out_plane();
  const int64_t channel_stride = s.groups * plane;  // c = j * G + g
  std::vector<T> scratch[3];
  for (int64_t g = block.begin; g < block.end; ++g) {
    const T* grads = grad_output + s.output_offset(block.n, 0, g);
    const T* values = input + s.input_offset(block.n, g);
    const T* w = weight + s.weight_offset(block.n, 0, g, 0);
    T* gw = grad_weight == nullptr
                ? nullptr
                : grad_weight + s.weight_offset(block.n, 0, g, 0);
    T* gv = grad_input == nullptr ? nullptr
                                  : grad_input + s.input_offset(block.n, g);
    for (int64_t begin = 0, end = 0; begin < plane; begin = end) {
      end = group_tile_end<T>(window, plane, begin);
      if (gw != nullptr) {
        int64_t value_stride;
        const T* padded_values =
            padded_tiles(s, window, values, channel_stride, kChannelsPerGroup,
                         begin, end, &scratch[0], &value_stride);
        weight_gradient_group_tile(s, window, grads, channel_stride,
                                   padded_values, value_stride, gw, begin,
                                   end);
      }
      if (gv == nullptr) continue;
      int64_t weight_stride, grad_stride;
      const T* weights = padded_tiles(s, window, w, plane, kTaps, begin, end,
                                      &scratch[1], &weight_stride);
      const T* padded_grads =
          padded_tiles(s, window, grads, channel_stride, kChannelsPerGroup,
                       begin, end, &scratch[2], &grad_stride);
      if (input_gradient_group_tile(s, window, weights, weight_stride,
                                    padded_grads, grad_stride, gv,
                                    channel_stride, begin, end)) {
        continue;
      }
      const uint8_t* masks[kKernel];
      for (int64_t j = 0; j < kKernel; ++j) {
        masks[j] = plan.column_mask(j) + begin;
      }
      for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
        input_gradient_centred<true>(
            window, weights, weight_stride, padded_grads + c * grad_stride,
            masks, gv + c * channel_stride + begin, end - begin);
      }
    }
  }
}

// The per-sample affine that normalises channels-last weights (N, H', W',
// heads*G*K*K): weight j of every pixel of sample n becomes
// (w - mean[i]) * scale[i] + shift[i], i = n * pixel_weights + j (the
// mean subtracted first: no cancellation against a large shift); the
// tap_ arrays hold the same values tap-major, weight (head, g, t) of a
// pixel at (head * K*K + t) * G + g; null: none.
template <typename T>
struct PixelAffine {
  const T* mean = nullptr;
  const T* scale = nullptr;
  const T* shift = nullptr;
  const T* tap_mean = nullptr;
  const T* tap_scale = nullptr;
  const T* tap_shift = nullptr;

  // the same arrays from element i on
  PixelAffine from(int64_t i) const {
    return {mean + i,     scale + i,     shift + i,
            tap_mean + i, tap_scale + i, tap_shift + i};
  }
};

// The arrays a PixelAffine points into (pixel_affine fills them).
template <typename T>
struct PixelAffineArrays {
  std::vector<T> mean, scale, shift, tap_mean, tap_scale, tap_shift;

  std::vector<std::vector<T>*> all() {
    return {&mean, &scale, &shift, &tap_mean, &tap_scale, &tap_shift};
  }
  PixelAffine<T> view() const {
    return {mean.data(),     scale.data(),     shift.data(),
            tap_mean.data(), tap_scale.data(), tap_shift.data()};
  }
};

// columns[t][l] = rows[l][t] for an 8 x 8 float matrix in 8 vectors:
// three rounds of two-vector shuffles in registers.
template <typename V>
inline void transpose_8x8(const V* rows, V* columns) {
  using Index = typename Vector<float>::mask;
  V a[8], b[8];
  const Index low{0, 8, 1, 9, 4, 12, 5, 13}, high{2, 10, 3, 11, 6, 14, 7, 15};
  const Index even{0, 1, 8, 9, 4, 5, 12, 13};
  const Index odd{2, 3, 10, 11, 6, 7, 14, 15};
  const Index first{0, 1, 2, 3, 8, 9, 10, 11};
  const Index second{4, 5, 6, 7, 12, 13, 14, 15};
#pragma GCC unroll 4
  for (int64_t p = 0; p < 8; p += 2) {  // a[p]: columns 0, 1, 4, 5
    a[p] = __builtin_shuffle(rows[p], rows[p + 1], low);
    a[p + 1] = __builtin_shuffle(rows[p], rows[p + 1], high);
  }
#pragma GCC unroll 2
  for (int64_t q = 0; q < 8; q += 4) {  // b[q + k]: columns k, k + 4
#pragma GCC unroll 2
    for (int64_t k = 0; k < 2; ++k) {
      b[q + 2 * k] = __builtin_shuffle(a[q + k], a[q + k + 2], even);
      b[q + 2 * k + 1] = __builtin_shuffle(a[q + k], a[q + k + 2], odd);
    }
  }
#pragma GCC unroll 4
  for (int64_t t = 0; t < 4; ++t) {
    columns[t] = __builtin_shuffle(b[t], b[t + 4], first);
    columns[t + 4] = __builtin_shuffle(b[t], b[t + 4], second);
  }
}

// columns[t][l] = w[l * 9 + t] for the 9 taps t and the kLanes groups l of
// a block: its weights tap-major, as vectors. For float, the first 8 taps
// by transpose_8x8, the last one element by element.
template <typename T>
inline void tap_major_block(const T* __restrict__ w,
                            typename Vector<T>::type* columns) {
  using V = typename Vector<T>::type;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  if constexpr (kLanes<T> == 8) {
    V rows[8];
#pragma GCC unroll 8
    for (int64_t l = 0; l < 8; ++l) rows[l] = load_vector<V>(w + l * kTaps);
    transpose_8x8(rows, columns);
    for (int64_t l = 0; l < 8; ++l) columns[8][l] = w[l * kTaps + 8];
  } else {
    for (int64_t t = 0; t < kTaps; ++t) {
      for (int64_t l = 0; l < kLanes<T>; ++l) {
        columns[t][l] = w[l * kTaps + t];
      }
    }
  }
}

// to[t * G + g] = w[g * K*K + t]: the weights (G, K*K) of one pixel and
// head tap-major, by tap_major_block where a 3 x 3 window's groups come in
// whole vectors.
template <typename T>
inline void tap_major_pixel(const T* __restrict__ w, int64_t groups,
                            int64_t taps, T* __restrict__ to) {
  using V = typename Vector<T>::type;
  if (taps == CentredWindow::kTaps && groups % kLanes<T> == 0) {
    V columns[CentredWindow::kTaps];
    for (int64_t g = 0; g < groups; g += kLanes<T>) {
      tap_major_block(w + g * taps, columns);
      for (int64_t t = 0; t < taps; ++t) {
        std::memcpy(to + t * groups + g, &columns[t], sizeof(V));
      }
    }
    return;
  }
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t = 0; t < taps; ++t) to[t * groups + g] = w[g * taps + t];
  }
}

// w[l * 9 + t] = columns[t][l]: the inverse of tap_major_block, a block's
// 9 tap vectors written pixel-major.
template <typename T>
inline void store_pixel_major_block(const typename Vector<T>::type* columns,
                                    T* __restrict__ w) {
  using V = typename Vector<T>::type;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  if constexpr (kLanes<T> == 8) {
    V rows[8];
    transpose_8x8(columns, rows);
#pragma GCC unroll 8
    for (int64_t l = 0; l < 8; ++l) {
      std::memcpy(w + l * kTaps, &rows[l], sizeof(V));
      w[l * kTaps + 8] = columns[8][l];
    }
  } else {
    for (int64_t t = 0; t < kTaps; ++t) {
      for (int64_t l = 0; l < kLanes<T>; ++l) {
        w[l * kTaps + t] = columns[t][l];
      }
    }
  }
}

// The channels-last forward of one pixel whose centred 3 x 3 window lies
// inside the image, C = 8 G with G a multiple of kLanes: per block of
// kLanes groups, the block's weights transposed tap-major
// (tap_major_block), each tap's vector of them normalised by the
// tap-major affine (kNormalised; `affine` from the pixel's first weight of
// the head), then summed as aggregate_group_block does, the taps at the
// fixed `offsets` from the pixel's values `centre`.
template <bool kNormalised, typename T>
inline void aggregate_centred_pixel(const T* __restrict__ centre,
                                    const int64_t* offsets,
                                    const T* __restrict__ w,
                                    const PixelAffine<T>& affine,
                                    int64_t groups, T* __restrict__ out) {
  using V = typename Vector<T>::type;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  constexpr int64_t kBlock = kLanes<T>;
  V block[kTaps];
  for (int64_t g = 0; g < groups; g += kBlock) {
    tap_major_block(w + g * kTaps, block);
    V acc[kChannelsPerGroup];
#pragma GCC unroll 8
    for (int64_t c = 0; c < kChannelsPerGroup; ++c) acc[c] = V{};
#pragma GCC unroll 9
    for (int64_t t = 0; t < kTaps; ++t) {
      V weight = block[t];
      if (kNormalised) {
        const int64_t at = t * groups + g;
        weight = (weight - load_vector<V>(affine.tap_mean + at)) *
                     load_vector<V>(affine.tap_scale + at) +
                 load_vector<V>(affine.tap_shift + at);
      }
      const T* v = centre + offsets[t] + g;
#pragma GCC unroll 8
      for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
        acc[c] += weight * load_vector<V>(v + c * groups);
      }
    }
#pragma GCC unroll 8
    for (int64_t c = 0; c < kChannelsPerGroup; ++c) {
      std::memcpy(out + c * groups + g, &acc[c], sizeof(V));
    }
  }
}

template <typename T>
void forward_channels_last_rows(const LocalAggregationShape& s,
                                const T* input, const T* weight,
                                const PixelAffine<T>& affine, T* output,
                                int64_t row_begin, int64_t row_end) {
  const int64_t groups = s.groups, channels = s.channels;
  const int64_t pixel_weights = s.heads * groups * s.taps();
  const bool blocked = channels == kChannelsPerGroup * groups;
  const int64_t block_end = blocked ? groups - groups % kLanes<T> : 0;
  std::vector<T> tap_major(s.taps() * groups);
  std::vector<const T*> values(s.taps()), weights(s.taps());
  // a centred window with C = 8 G, G a multiple of kLanes: the pixels
  // whose taps all lie inside take aggregate_centred_pixel
  const bool centred = centred_geometry(s) && block_end == groups;
  int64_t offsets[CentredWindow::kTaps];
  for (int64_t t = 0; t < CentredWindow::kTaps; ++t) {
    offsets[t] = ((t / 3 - 1) * s.dilation_h * s.width +
                  (t % 3 - 1) * s.dilation_w) * channels;
  }
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / s.out_height, y = row % s.out_height;
    const bool inner_row = centred && y >= s.dilation_h &&
                           y + s.dilation_h < s.height;
    for (int64_t x = 0; x < s.out_width; ++x) {
      const int64_t pixel = row * s.out_width + x;
      if (inner_row && x >= s.dilation_w && x + s.dilation_w < s.width) {
        const T* centre = input + ((n * s.height + y) * s.width + x) * channels;
        for (int64_t head = 0; head < s.heads; ++head) {
          const int64_t at = head * groups * s.taps();
          const T* w = weight + pixel * pixel_weights + at;
          T* out = output + (pixel * s.heads + head) * channels;
          if (affine.scale != nullptr) {
            aggregate_centred_pixel<true>(centre, offsets, w,
                                          affine.from(n * pixel_weights + at),
                                          groups, out);
          } else {
            aggregate_centred_pixel<false>(centre, offsets, w, affine, groups,
                                           out);
          }
        }
        continue;
      }
      // the taps inside the image; those in the padding add nothing
      int64_t taps = 0;
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        const int64_t y_in = y * s.stride_h - s.pad_h + i * s.dilation_h;
        if (y_in < 0 || y_in >= s.height) continue;
        for (int64_t j = 0; j < s.kernel_w; ++j) {
          const int64_t x_in = x * s.stride_w - s.pad_w + j * s.dilation_w;
          if (x_in < 0 || x_in >= s.width) continue;
          values[taps] =
              input + ((n * s.height + y_in) * s.width + x_in) * channels;
          weights[taps++] = tap_major.data() + (i * s.kernel_w + j) * groups;
        }
      }
      for (int64_t head = 0; head < s.heads; ++head) {
        const int64_t at = head * groups * s.taps();
        const T* w = weight + pixel * pixel_weights + at;
        if (affine.scale != nullptr) {
          const T* mean = affine.mean + n * pixel_weights + at;
          const T* scale = affine.scale + n * pixel_weights + at;
          const T* shift = affine.shift + n * pixel_weights + at;
          for (int64_t g = 0; g < groups; ++g) {
            for (int64_t t = 0; t < s.taps(); ++t) {
              const int64_t j = g * s.taps() + t;
              tap_major[t * groups + g] =
                  (w[j] - mean[j]) * scale[j] + shift[j];
            }
          }
        } else {
          tap_major_pixel(w, groups, s.taps(), tap_major.data());
        }
        T* out = output + (pixel * s.heads + head) * channels;
        aggregate_group_blocks(out, values.data(), weights.data(), taps,
                               groups, block_end);
        for (int64_t g = block_end; g < groups; ++g) {
          for (int64_t c = g; c < channels; c += groups) {
            T sum = 0;
            for (int64_t t = 0; t < taps; ++t) {
              sum += weights[t][g] * values[t][c];
            }
            out[c] = sum;
          }
        }
      }
    }
  }
}

// The sum of x[k] for k in [0, n), or with kSquares of (x[k] - centre)^2:
// in two vector registers of partial sums over chunks of kChunk elements,
// the chunks' sums added in double.
template <bool kSquares, typename T>
double chunked_sum(const T* __restrict__ x, int64_t n, T centre) {
  using V = typename Vector<T>::type;
  constexpr int64_t kStep = 2 * kLanes<T>, kChunk = 1024;
  double total = 0;
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t end = std::min(begin + kChunk, n);
    V sums[2] = {V{}, V{}};
    int64_t k = begin;
    for (; k + kStep <= end; k += kStep) {
#pragma GCC unroll 2
      for (int64_t r = 0; r < 2; ++r) {
        V d = load_vector<V>(x + k + r * kLanes<T>);
        if (kSquares) d = (d - centre) * (d - centre);
        sums[r] += d;
      }
    }
    double chunk = 0;
    for (; k < end; ++k) {
      const T d = kSquares ? x[k] - centre : x[k];
      chunk += kSquares ? d * d : d;
    }
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t l = 0; l < kLanes<T>; ++l) chunk += sums[r][l];
    }
    total += chunk;
  }
  return total;
}

// The block's weight groups (every head) normalised as GroupNorm does, one
// normalisation group per (head, weight group) over its taps and positions
// (biased variance, the mean subtracted before squaring), then scaled and
// shifted per tap by the affine of sample n % affine.samples; written to
// *normed, head-major, and returned as the block's weights.
template <typename T>
BlockWeights<T> normalize_block(const LocalAggregationShape& s,
                                const GroupNormAffine<T>& affine,
                                const T* weight, const GroupBlock& block,
                                std::unique_ptr<T[]>* normed) {
  const int64_t taps = s.taps(), plane = s.out_plane();
  const int64_t count = taps * plane, groups = block.end - block.begin;
  normed->reset(new T[s.heads * groups * count]);
  T* to = normed->get();
  for (int64_t head = 0; head < s.heads; ++head) {
    for (int64_t g = block.begin; g < block.end; ++g, to += count) {
      const T* from = weight + s.weight_offset(block.n, head, g, 0);
      const T mean = static_cast<T>(chunked_sum<false>(from, count, T(0)) /
                                    static_cast<double>(count));
      const double variance =
          chunked_sum<true>(from, count, mean) / static_cast<double>(count);
      const T rstd = static_cast<T>(1 / std::sqrt(variance + affine.eps));
      const int64_t at =
          (((block.n % affine.samples) * s.heads + head) * s.groups + g) *
          taps;
      for (int64_t t = 0; t < taps; ++t) {
        const T scale = rstd * affine.scale[at + t];
        const T shift = affine.shift[at + t];
        const T* __restrict__ row = from + t * plane;
        T* __restrict__ out = to + t * plane;
        for (int64_t p = 0; p < plane; ++p) {
          out[p] = (row[p] - mean) * scale + shift;
        }
      }
    }
  }
  return {normed->get(), block.begin, groups * count, count};
}

// Pixels of a sample whose sums one task of pixel_affine adds (in vector
// registers over kStatChunk pixels at a time, then in double).
constexpr int64_t kStatPixels = 512, kStatChunk = 32;

// GroupNorm's statistics of channels-last weights (N, H', W', heads*G*K*K)
// as PixelAffine: per sample and weight j of a pixel, the mean of its group
// (the K*K weights g*K*K .. of each head), the scale rstd * gn_weight and
// the shift gn_bias. Mean and variance come from the sums
// of w - first and (w - first)^2, `first` the group's first weight of the
// sample's first pixel: a shift near the mean, against cancellation.
template <typename T>
void pixel_affine(const LocalAggregationShape& s, const T* weight,
                  const GroupNormAffine<T>& affine,
                  PixelAffineArrays<T>* out) {
  const int64_t taps = s.taps(), pixels = s.out_plane();
  const int64_t lanes = s.heads * s.groups * taps;  // weights of a pixel
  const int64_t parts = (pixels + kStatPixels - 1) / kStatPixels;
  // sums of part p of sample n at partial[((n * parts + p) * 2 + m) * lanes]
  std::vector<double> partial(s.batch * parts * 2 * lanes);
  at::parallel_for(0, s.batch * parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> first(lanes), sums(2 * lanes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / parts, part = task % parts;
      const T* w = weight + n * pixels * lanes;
      for (int64_t j = 0; j < lanes; ++j) first[j] = w[j - j % taps];
      double* out = partial.data() + task * 2 * lanes;
      std::fill(out, out + 2 * lanes, 0.0);
      const int64_t to = std::min(pixels, (part + 1) * kStatPixels);
      for (int64_t from = part * kStatPixels; from < to;
           from += kStatChunk) {
        std::fill(sums.begin(), sums.end(), T(0));
        T* __restrict__ s1 = sums.data();
        T* __restrict__ s2 = sums.data() + lanes;
        const T* __restrict__ k = first.data();
        for (int64_t p = from; p < std::min(from + kStatChunk, to); ++p) {
          const T* __restrict__ row = w + p * lanes;
          for (int64_t j = 0; j < lanes; ++j) {
            const T d = row[j] - k[j];
            s1[j] += d;
            s2[j] += d * d;
          }
        }
        for (int64_t j = 0; j < 2 * lanes; ++j) out[j] += sums[j];
      }
    }
  });
  for (std::vector<T>* array : out->all()) array->resize(s.batch * lanes);
  const double count = static_cast<double>(pixels * taps);
  for (int64_t n = 0; n < s.batch; ++n) {
    const T* w = weight + n * pixels * lanes;
    const T* gamma = affine.scale + (n % affine.samples) * lanes;
    const T* beta = affine.shift + (n % affine.samples) * lanes;
    for (int64_t g = 0; g < lanes; g += taps) {
      double s1 = 0, s2 = 0;
      for (int64_t part = 0; part < parts; ++part) {
        const double* sums = partial.data() + (n * parts + part) * 2 * lanes;
        for (int64_t j = g; j < g + taps; ++j) {
          s1 += sums[j];
          s2 += sums[lanes + j];
        }
      }
      const double offset = s1 / count;
      const double variance = std::max(s2 / count - offset * offset, 0.0);
      const T group_mean = static_cast<T>(w[g] + offset);
      const T rstd = static_cast<T>(1 / std::sqrt(variance + affine.eps));
      // weight g + t of a pixel, and its place tap-major
      const int64_t head_first = g - g % (s.groups * taps);
      const int64_t group = (g - head_first) / taps;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t i = n * lanes + g + t;
        const int64_t k = n * lanes + head_first + t * s.groups + group;
        out->mean[i] = out->tap_mean[k] = group_mean;
        out->scale[i] = out->tap_scale[k] = rstd * gamma[g + t];
        out->shift[i] = out->tap_shift[k] = beta[g + t];
      }
    }
  }
}

// The channels-last backward (backward_channels_last) reads grad_output
// (N, H', W', heads*C), the input (N, H, W, C) and the weights pixel-major
// (N, H', W', heads, G, K*K) where they lie and writes grad_input
// (N, H, W, C) and grad_weight pixel-major, parallel over rows, each
// element summed in a register over all its terms and written once: the
// weight gradient by output row, the input gradient by input row (a
// gather: each input pixel sums the terms of the output pixels whose
// window reads it, from their weights transposed tap-major by
// TapMajorRows, so that kLanes consecutive groups, those of kLanes
// consecutive channels, are one vector), in one pass where the output is
// as tall as the input. Taps outside the image add no term, as in the
// other kernels.

// weight_gradient_channels_last_rows for one output pixel (n, y, x) and
// head of a 3 x 3 window with 8 channels a group and G a multiple of
// kLanes: per block of kLanes groups, the 9 taps' sums as vectors, each
// grad_output vector loaded once for the 9, those of taps outside the
// image read from `zeros` (C of them) and then zeroed, written pixel-major
// at once (store_pixel_major_block).
template <typename T>
void weight_gradient_centred_pixel(const LocalAggregationShape& s,
                                   const T* __restrict__ go,
                                   const T* __restrict__ input,
                                   const T* __restrict__ zeros, int64_t n,
                                   int64_t y, int64_t x, T* __restrict__ gw) {
  using V = typename Vector<T>::type;
  constexpr int64_t kTaps = CentredWindow::kTaps;
  const int64_t groups = s.groups;
  const T* values[kTaps];
  bool inside[kTaps];
  for (int64_t t = 0; t < kTaps; ++t) {
    const int64_t y_in = y * s.stride_h - s.pad_h + t / 3 * s.dilation_h;
    const int64_t x_in = x * s.stride_w - s.pad_w + t % 3 * s.dilation_w;
    inside[t] = y_in >= 0 && y_in < s.height && x_in >= 0 && x_in < s.width;
    values[t] = inside[t] ? input + ((n * s.height + y_in) * s.width + x_in) *
                                        s.channels
                          : zeros;
  }
  for (int64_t g = 0; g < groups; g += kLanes<T>) {
    V sums[kTaps] = {};
#pragma GCC unroll 8
    for (int64_t k = 0; k < kChannelsPerGroup; ++k) {
      const int64_t c = k * groups + g;
      const V grad = load_vector<V>(go + c);
#pragma GCC unroll 9
      for (int64_t t = 0; t < kTaps; ++t) {
        sums[t] += grad * load_vector<V>(values[t] + c);
      }
    }
    for (int64_t t = 0; t < kTaps; ++t) {
      if (!inside[t]) sums[t] = V{};
    }
    store_pixel_major_block(sums, gw + g * kTaps);
  }
}

// grad_weight[n, y, x, head, g, t] = sum over the channels c = j*G + g, in
// increasing order, of grad_output[n, y, x, head*C + c] * input[n, y_t,
// x_t, c], (y_t, x_t) the input pixel tap t of (y, x) reads (0 where it
// lies outside), for the output rows [row_begin, row_end) of N*H'.
template <typename T>
void weight_gradient_channels_last_rows(const LocalAggregationShape& s,
                                        const T* grad_output, const T* input,
                                        T* grad_weight, int64_t row_begin,
                                        int64_t row_end) {
  using V = typename Vector<T>::type;
  const int64_t groups = s.groups, channels = s.channels, taps = s.taps();
  const int64_t block_end = groups - groups % kLanes<T>;
  // 3 x 3 taps, 8 channels a group, groups in whole vectors (a CoT layer's)
  const bool centred = s.kernel_h == CentredWindow::kKernel &&
                       s.kernel_w == CentredWindow::kKernel &&
                       channels == kChannelsPerGroup * groups &&
                       block_end == groups;
  const std::vector<T> zeros(centred ? channels : 0);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / s.out_height, y = row % s.out_height;
    for (int64_t x = 0; x < s.out_width; ++x) {
      for (int64_t head = 0; head < s.heads; ++head) {
        const int64_t at = (row * s.out_width + x) * s.heads + head;
        const T* go = grad_output + at * channels;
        T* gw = grad_weight + at * groups * taps;  // (g, t) at g * taps + t
        if (centred) {
          weight_gradient_centred_pixel(s, go, input, zeros.data(), n, y, x,
                                        gw);
          continue;
        }
        for (int64_t i = 0; i < s.kernel_h; ++i) {
          const int64_t y_in = y * s.stride_h - s.pad_h + i * s.dilation_h;
          for (int64_t j = 0; j < s.kernel_w; ++j) {
            const int64_t x_in = x * s.stride_w - s.pad_w + j * s.dilation_w;
            T* out = gw + i * s.kernel_w + j;
            if (y_in < 0 || y_in >= s.height || x_in < 0 || x_in >= s.width) {
              for (int64_t g = 0; g < groups; ++g) out[g * taps] = 0;
              continue;
            }
            const T* v =
                input + ((n * s.height + y_in) * s.width + x_in) * channels;
            for (int64_t g = 0; g < block_end; g += kLanes<T>) {
              V sum{};
              for (int64_t c = g; c < channels; c += groups) {
                sum += load_vector<V>(go + c) * load_vector<V>(v + c);
              }
              for (int64_t l = 0; l < kLanes<T>; ++l) {
                out[(g + l) * taps] = sum[l];
              }
            }
            for (int64_t g = block_end; g < groups; ++g) {
              T sum = 0;
              for (int64_t c = g; c < channels; c += groups) {
                sum += go[c] * v[c];
              }
              out[g * taps] = sum;
            }
          }
        }
      }
    }
  }
}

// The weights of output rows transposed tap-major, (W', heads, K*K, G) a
// row, for the input gradient of a task's consecutive input rows: a ring of
// as many rows as one input row's window reaches, plus one, each row
// transposed when first asked for.
template <typename T>
class TapMajorRows {
 public:
  TapMajorRows(const LocalAggregationShape& s, const T* weight)
      : s_(s),
        weight_(weight),
        row_size_(s.out_width * s.heads * s.groups * s.taps()),
        slots_((s.kernel_h - 1) * s.dilation_h / s.stride_h + 2),
        rows_(slots_, -1),
        buffer_(slots_ * row_size_) {}

  // Output row `row` of N*H', transposed.
  const T* row(int64_t row) {
    const int64_t slot = row % slots_;
    T* to = buffer_.data() + slot * row_size_;
    if (rows_[slot] != row) {
      transpose(weight_ + row * row_size_, to);
      rows_[slot] = row;
    }
    return to;
  }

 private:
  void transpose(const T* from, T* to) const {
    const int64_t block = s_.groups * s_.taps();  // a pixel's of one head
    for (int64_t b = 0; b < s_.out_width * s_.heads; ++b) {
      tap_major_pixel(from + b * block, s_.groups, s_.taps(), to + b * block);
    }
  }

  const LocalAggregationShape& s_;
  const T* weight_;
  const int64_t row_size_, slots_;
  std::vector<int64_t> rows_;
  std::vector<T> buffer_;
};

// grad_input[n, y, x, c] = sum over the heads and the taps t of the output
// pixels (y', x') whose tap t reads (y, x) of weight[n, y', x', head, c %
// G, t] * grad_output[n, y', x', head*C + c], heads then taps in order, for
// the input rows [row_begin, row_end) of N*H, the weights from `columns`.
template <typename T>
void input_gradient_channels_last_rows(const LocalAggregationShape& s,
                                       const T* grad_output,
                                       TapMajorRows<T>* columns,
                                       T* grad_input, int64_t row_begin,
                                       int64_t row_end) {
  using V = typename Vector<T>::type;
  const int64_t groups = s.groups, channels = s.channels, taps = s.taps();
  const int64_t block_end = groups - groups % kLanes<T>;
  const int64_t head_weights = taps * groups;  // of a pixel, tap-major
  // one head, 8 channels a group, groups in whole vectors (a CoT layer's)
  const bool grouped = s.heads == 1 && channels == kChannelsPerGroup * groups &&
                       block_end == groups;
  // the output pixels reading an input pixel and their taps' weights
  std::vector<const T*> grads(taps), weights(taps);
  // per window row i of an input row: the output row reading it (its
  // weights, tap-major), or none
  std::vector<int64_t> out_rows(s.kernel_h);
  std::vector<const T*> out_columns(s.kernel_h);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t n = row / s.height, y_in = row % s.height;
    for (int64_t i = 0; i < s.kernel_h; ++i) {
      const int64_t dy = y_in + s.pad_h - i * s.dilation_h;
      const int64_t y = dy / s.stride_h;
      const bool reads = dy >= 0 && dy % s.stride_h == 0 && y < s.out_height;
      out_rows[i] = reads ? y : -1;
      out_columns[i] = reads ? columns->row(n * s.out_height + y) : nullptr;
    }
    for (int64_t x_in = 0; x_in < s.width; ++x_in) {
      int64_t terms = 0;
      for (int64_t i = 0; i < s.kernel_h; ++i) {
        const int64_t y = out_rows[i];
        if (y < 0) continue;
        const T* out_row = out_columns[i];
        for (int64_t j = 0; j < s.kernel_w; ++j) {
          const int64_t dx = x_in + s.pad_w - j * s.dilation_w;
          if (dx < 0 || (s.stride_w > 1 && dx % s.stride_w)) continue;
          const int64_t x = s.stride_w > 1 ? dx / s.stride_w : dx;
          if (x >= s.out_width) continue;
          const int64_t pixel = (n * s.out_height + y) * s.out_width + x;
          grads[terms] = grad_output + pixel * s.heads * channels;
          weights[terms++] = out_row + x * s.heads * head_weights +
                             (i * s.kernel_w + j) * groups;
        }
      }
      T* gi = grad_input + (row * s.width + x_in) * channels;
      if (grouped) {  // per block of kLanes groups, as the forward
        aggregate_group_blocks(gi, grads.data(), weights.data(), terms,
                               groups, groups);
        continue;
      }
      for (int64_t c0 = 0; c0 < channels; c0 += groups) {
        for (int64_t g = 0; g < block_end; g += kLanes<T>) {
          V sum{};
          for (int64_t head = 0; head < s.heads; ++head) {
            for (int64_t k = 0; k < terms; ++k) {
              sum += load_vector<V>(weights[k] + head * head_weights + g) *
                     load_vector<V>(grads[k] + head * channels + c0 + g);
            }
          }
          std::memcpy(gi + c0 + g, &sum, sizeof(V));
        }
        for (int64_t g = block_end; g < groups; ++g) {
          T sum = 0;
          for (int64_t head = 0; head < s.heads; ++head) {
            for (int64_t k = 0; k < terms; ++k) {
              sum += weights[k][head * head_weights + g] *
                     grads[k][head * channels + c0 + g];
            }
          }
          gi[c0 + g] = sum;
        }
      }
    }
  }
}

// The forward over every block, weights_of(block, &scratch) giving the
// block's weights (scratch: a buffer the task owns).
template <typename T, typename WeightsOf>
void forward_blocks(const LocalAggregationShape& s, const T* input,
                    T* output, const WeightsOf& weights_of) {
  const WindowPlan plan(s);
  const bool grouped = centred_group_window<T>(s);
  for_each_group_block<T>(s, [&](const GroupBlock& block) {
    std::unique_ptr<T[]> scratch;
    const BlockWeights<T> weights = weights_of(block, &scratch);
    if (grouped) {
      forward_centred_group_task(s, plan, input, weights, output, block);
    } else {
      forward_task(s, plan, input, weights, output, block);
    }
  });
}

}  // namespace

template <typename T>
void forward(const LocalAggregationShape& s, const T* input, const T* weight,
             T* output) {
  forward_blocks(s, input, output,
                 [&](const GroupBlock& block, std::unique_ptr<T[]>*) {
                   return BlockWeights<T>::in_tensor(s, weight, block);
                 });
}

template <typename T>
void forward_group_normed(const LocalAggregationShape& s, const T* input,
                          const T* weight, const GroupNormAffine<T>& affine,
                          T* output) {
  forward_blocks(s, input, output,
                 [&](const GroupBlock& block, std::unique_ptr<T[]>* scratch) {
                   return normalize_block(s, affine, weight, block, scratch);
                 });
}

template <typename T>
void forward_channels_last(const LocalAggregationShape& s, const T* input,
                           const T* weight, T* output) {
  at::parallel_for(0, s.batch * s.out_height, 1,
                   [&](int64_t begin, int64_t end) {
                     forward_channels_last_rows(s, input, weight,
                                                PixelAffine<T>(), output,
                                                begin, end);
                   });
}

template <typename T>
void forward_group_normed_channels_last(const LocalAggregationShape& s,
                                        const T* input, const T* weight,
                                        const GroupNormAffine<T>& affine,
                                        T* output) {
  PixelAffineArrays<T> arrays;
  pixel_affine(s, weight, affine, &arrays);
  const PixelAffine<T> normalize = arrays.view();
  at::parallel_for(0, s.batch * s.out_height, 1,
                   [&](int64_t begin, int64_t end) {
                     forward_channels_last_rows(s, input, weight, normalize,
                                                output, begin, end);
                   });
}

template <typename T>
void backward(const LocalAggregationShape& s, const T* grad_output,
              const T* input, const T* weight, T* grad_input,
              T* grad_weight) {
  const WindowPlan plan(s);
  const bool grouped = centred_group_backward<T>(s);
  const bool centred =
      centred_window(s) && s.channels == kChannelsPerGroup * s.groups;
  for_each_group_block<T>(s, [&](const GroupBlock& block) {
    if (grouped) {
      backward_centred_group_task(s, plan, grad_output, input, weight,
                                  grad_input, grad_weight, block);
    } else if (centred) {
      backward_centred_task(s, plan, grad_output, input, weight, grad_input,
                            grad_weight, block);
    } else {
      backward_task(s, plan, grad_output, input, weight, grad_input,
                    grad_weight, block);
    }
  });
}

template <typename T>
void backward_channels_last(const LocalAggregationShape& s,
                            const T* grad_output, const T* input,
                            const T* weight, T* grad_input, T* grad_weight) {
  if (grad_weight != nullptr && grad_input != nullptr &&
      s.out_height == s.height) {
    // one pass: output row r's weight gradient, then input row r's, whose
    // window reads output rows around r, still in cache
    at::parallel_for(0, s.batch * s.height, 1,
                     [&](int64_t begin, int64_t end) {
                       TapMajorRows<T> columns(s, weight);
                       for (int64_t row = begin; row < end; ++row) {
                         weight_gradient_channels_last_rows(
                             s, grad_output, input, grad_weight, row,
                             row + 1);
                         input_gradient_channels_last_rows(
                             s, grad_output, &columns, grad_input, row,
                             row + 1);
                       }
                     });
    return;
  }
  if (grad_weight != nullptr) {
    at::parallel_for(0, s.batch * s.out_height, 1,
                     [&](int64_t begin, int64_t end) {
                       weight_gradient_channels_last_rows(
                           s, grad_output, input, grad_weight, begin, end);
                     });
  }
  if (grad_input != nullptr) {
    at::parallel_for(0, s.batch * s.height, 1,
                     [&](int64_t begin, int64_t end) {
                       TapMajorRows<T> columns(s, weight);
                       input_gradient_channels_last_rows(
                           s, grad_output, &columns, grad_input, begin, end);
                     });
  }
}

template void forward(const LocalAggregationShape&, const float*,
                      const float*, float*);
template void forward(const LocalAggregationShape&, const double*,
                      const double*, double*);
template void forward_group_normed(const LocalAggregationShape&,
                                   const float*, const float*,
                                   const GroupNormAffine<float>&, float*);
template void forward_group_normed(const LocalAggregationShape&,
                                   const double*, const double*,
                                   const GroupNormAffine<double>&, double*);
template void forward_group_normed_channels_last(
    const LocalAggregationShape&, const float*, const float*,
    const GroupNormAffine<float>&, float*);
template void forward_group_normed_channels_last(
    const LocalAggregationShape&, const double*, const double*,
    const GroupNormAffine<double>&, double*);
template void forward_channels_last(const LocalAggregationShape&,
                                    const float*, const float*, float*);
template void forward_channels_last(const LocalAggregationShape&,
                                    const double*, const double*, double*);
template void backward(const LocalAggregationShape&, const float*,
                       const float*, const float*, float*, float*);
template void backward(const LocalAggregationShape&, const double*,
                       const double*, const double*, double*, double*);
template void backward_channels_last(const LocalAggregationShape&,
                                     const float*, const float*,
                                     const float*, float*, float*);
template void backward_channels_last(const LocalAggregationShape&,
                                     const double*, const double*,
                                     const double*, double*, double*);

}  // namespace MMCOT_CPU_ISA
}  // namespace cpu
}  // namespace mmcot
