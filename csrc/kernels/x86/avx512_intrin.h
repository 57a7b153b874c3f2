// quantkit — <immintrin.h> for the AVX-512 translation units.
// GCC 12 before 12.3 reports the deliberate self-initialisation inside _mm512_undefined_*() (used by many AVX-512
// intrinsics, e.g. the conversions) as -W(maybe-)uninitialized at every call site (GCC bug 105593, a false
// positive). Include this first: it silences only those two warnings, only on GCC 12, for the including file.
#ifndef QK_X86_AVX512_INTRIN_H_
#define QK_X86_AVX512_INTRIN_H_

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#endif  // QK_X86_AVX512_INTRIN_H_
