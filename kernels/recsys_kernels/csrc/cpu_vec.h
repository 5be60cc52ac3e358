// What recsys's CPU kernels vectorise with: 8 floats in GCC/Clang's vector extension, and the
// multi-versioning of the entry points that run them.
#pragma once

#include <cstdint>
#include <cstring>

namespace recsys {

// One AVX register in the AVX2 build of the row loops, two SSE registers in the baseline one.
// Loads and stores go through memcpy (rows are not 32-byte aligned).
using Vec = float __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

inline __attribute__((always_inline)) Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}

inline __attribute__((always_inline)) void store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }

inline __attribute__((always_inline)) Vec broadcast(float s) { return Vec{} + s; }

}  // namespace recsys

// Entry points built for AVX2+FMA and for any x86-64, the right one picked when the library
// loads (GCC's function multi-versioning); elsewhere built once for the compiler's target.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RECSYS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RECSYS_CPU_CLONES
#endif
