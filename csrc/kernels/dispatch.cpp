// quantkit — CPU feature detection and the per-ISA kernel tables.
// Compiled without ISA flags: it only reads CPUID and stores function pointers.
#include <cstdlib>
#include <cstring>

#include "qk/dispatch.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define QK_X86 1
#endif

namespace qk {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

bool parse_isa(const char* s, Isa* out) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (std::strcmp(s, isa_name(static_cast<Isa>(i))) == 0) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

namespace {

#ifdef QK_X86
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef QK_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  const bool avx = (c >> 28) & 1;
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // XMM + YMM state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = ((b >> 5) & 1) && avx && os_ymm;
    f.avx512f = ((b >> 16) & 1) && os_zmm;
    f.avx512dq = ((b >> 17) & 1) && os_zmm;
    f.avx512bw = ((b >> 30) & 1) && os_zmm;
    f.avx512vl = ((b >> 31) & 1) && os_zmm;
    f.avx512vnni = ((c >> 11) & 1) && os_zmm;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = ((a >> 5) & 1) && os_zmm;
    f.avxvnni = ((a >> 4) & 1) && os_ymm;
  }
  f.fma = f.fma && os_ymm;
  f.f16c = f.f16c && os_ymm;
#endif
  return f;
}

#define QK_TABLE(ns, isa_value)                                                                          \
  KernelTable {                                                                                          \
    isa_value, ns::absmax, ns::absmax_quantize, ns::pack_int4, ns::unpack_int4, ns::pack_int2,           \
        ns::unpack_int2, ns::f32_to_f16, ns::f16_to_f32, ns::f32_to_bf16, ns::bf16_to_f32, ns::f32_to_fp8,  \
        ns::fp8_to_f32, ns::sgemm, ns::igemm_s8s8s32, ns::dense_w8a8, ns::dense_w4a8, ns::dense_w8,     \
        ns::dense_w4, ns::dense_w4g, ns::dense_fp8, ns::hessian_accumulate, ns::hessian_finalize,      \
        ns::cholesky_lower, ns::triangular_inverse_lower, ns::cholesky_inverse_upper,                    \
        ns::gptq_quantize_matrix, ns::dense_gptq, ref::gptq_runtime_pack, ref::gptq_runtime_unpack,       \
        ns::rmsnorm, ns::rope, ns::softmax_rows, ns::silu_mul, ns::attention_decode, ref::kv_cache_write, \
        ns::dense_lowbit_a8                                                                               \
  }

const KernelTable kRefTable = QK_TABLE(ref, Isa::kRef);
#ifdef QK_HAVE_X86_VARIANTS
const KernelTable kAvx2Table = QK_TABLE(avx2, Isa::kAvx2);
const KernelTable kAvx512Table = QK_TABLE(avx512, Isa::kAvx512);
#endif

struct State {
  CpuFeatures features;
  bool available[kNumIsas] = {true, false, false};
  Isa best = Isa::kRef;
  Isa active = Isa::kRef;
  std::string forced;       // QK_FORCE_ISA as given
  std::string warning;      // why QK_FORCE_ISA was not honoured
};

const State& state() {
  static const State s = [] {
    State st;
    st.features = detect();
#ifdef QK_HAVE_X86_VARIANTS
    const CpuFeatures& f = st.features;
    st.available[1] = f.avx2 && f.fma && f.f16c;
    st.available[2] = st.available[1] && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
                      f.avx512vnni && f.avx512bf16;
#endif
    for (int i = kNumIsas - 1; i >= 0; --i) {
      if (st.available[i]) {
        st.best = static_cast<Isa>(i);
        break;
      }
    }
    st.active = st.best;
    if (const char* env = std::getenv("QK_FORCE_ISA"); env != nullptr && *env != '\0') {
      st.forced = env;
      Isa want;
      if (!parse_isa(env, &want)) {
        st.warning = std::string("QK_FORCE_ISA='") + env + "' is not one of ref, avx2, avx512; using " +
                     isa_name(st.best);
      } else if (!st.available[static_cast<int>(want)]) {
        st.warning = std::string("QK_FORCE_ISA='") + env + "' is not supported by this CPU or build; using " +
                     isa_name(st.best);
      } else {
        st.active = want;
      }
    }
    return st;
  }();
  return s;
}

}  // namespace

const CpuFeatures& cpu_features() { return state().features; }
bool isa_available(Isa isa) { return state().available[static_cast<int>(isa)]; }
Isa best_isa() { return state().best; }
Isa active_isa() { return state().active; }
const std::string& forced_isa_warning() { return state().warning; }

const KernelTable* kernel_table(Isa isa) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kRef: return &kRefTable;
#ifdef QK_HAVE_X86_VARIANTS
    case Isa::kAvx2: return &kAvx2Table;
    case Isa::kAvx512: return &kAvx512Table;
#else
    default: break;
#endif
  }
  return nullptr;
}

const KernelTable& active_kernels() { return *kernel_table(active_isa()); }

}  // namespace qk
