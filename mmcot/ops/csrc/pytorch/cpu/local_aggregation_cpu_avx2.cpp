// The CPU kernels of local_aggregation_cpu_kernels.h for AVX2 (the
// instruction sets of ATen's AVX2 capability), chosen at run time by
// local_aggregation_cpu.cpp. Every header comes before the target options,
// so that only these kernels, none of the inline functions that other
// files share, are compiled for AVX2.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "local_aggregation_cpu.h"

#ifdef MMCOT_CPU_X86_KERNELS
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define MMCOT_CPU_ISA avx2
#include "local_aggregation_cpu_kernels.h"
#pragma GCC pop_options
#endif
