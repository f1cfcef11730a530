// The CPU kernel sets of the local aggregation op, one per instruction set
// (local_aggregation_cpu_kernels.h), and the choice among them.
#ifndef MMCOT_LOCAL_AGGREGATION_CPU_H
#define MMCOT_LOCAL_AGGREGATION_CPU_H

#include "../../common/local_aggregation_shape.h"

// x86-64 builds with GCC compile the AVX2 set too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMCOT_CPU_X86_KERNELS 1
#endif

namespace mmcot {
namespace cpu {

// GroupNorm's affine for forward_group_normed: scale and shift of shape
// (samples, heads, G, K*K); sample n of the op uses those of n % samples.
template <typename T>
struct GroupNormAffine {
  const T* scale;
  const T* shift;
  int64_t samples;
  double eps;
};

// The kernels of one instruction set, in a namespace of its name: base (any
// CPU) and avx2 (AVX2 and FMA; an AVX-512 set measured no faster). Pointers
// to contiguous tensors of the shapes of LocalAggregationShape (for
// forward_channels_last, its channels-last layouts: input (N, H, W, C),
// weight (N, H', W', heads, G, K*K), output (N, H', W', heads*C);
// for backward_channels_last, grad_output and grad_input channels-last,
// the weight and grad_weight pixel-major); grad_input or
// grad_weight null when not required; forward_group_normed
// (and forward_group_normed_channels_last, on channels-last layouts) is
// forward on the weights normalised by GroupNorm (each weight group of each
// head one normalisation group) and its affine. Instantiated for float and
// double.
#define MMCOT_DECLARE_CPU_KERNELS(isa)                                     \
  namespace isa {                                                          \
  template <typename T>                                                    \
  void forward(const LocalAggregationShape& s, const T* input,            \
               const T* weight, T* output);                                \
  template <typename T>                                                    \
  void forward_group_normed(const LocalAggregationShape& s,               \
                            const T* input, const T* weight,               \
                            const GroupNormAffine<T>& affine, T* output);  \
  template <typename T>                                                    \
  void forward_group_normed_channels_last(                                 \
      const LocalAggregationShape& s, const T* input, const T* weight,     \
      const GroupNormAffine<T>& affine, T* output);                        \
  template <typename T>                                                    \
  void forward_channels_last(const LocalAggregationShape& s,              \
                             const T* input, const T* weight, T* output);  \
  template <typename T>                                                    \
  void backward(const LocalAggregationShape& s, const T* grad_output,     \
                const T* input, const T* weight, T* grad_input,            \
                T* grad_weight);                                           \
  template <typename T>                                                    \
  void backward_channels_last(const LocalAggregationShape& s,             \
                              const T* grad_output, const T* input,        \
                              const T* weight, T* grad_input,              \
                              T* grad_weight);                             \
  }

MMCOT_DECLARE_CPU_KERNELS(base)
MMCOT_DECLARE_CPU_KERNELS(avx2)

#undef MMCOT_DECLARE_CPU_KERNELS

// The set the CPU op runs, "avx2" or "default": avx2 where this build has it
// and ATen's CPU capability (the CPU's, or ATEN_CPU_CAPABILITY's) is AVX2 or
// AVX512, as torch's own kernels choose theirs.
const char* cpu_kernel_isa();

}  // namespace cpu
}  // namespace mmcot

#endif  // MMCOT_LOCAL_AGGREGATION_CPU_H
