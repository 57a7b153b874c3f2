// quantkit — run-time CPU dispatch: which ISA variants this CPU can run, and their kernel tables.
#ifndef QK_DISPATCH_H_
#define QK_DISPATCH_H_

#include <string>

#include "qk/kernels.h"

namespace qk {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avxvnni = false;
};

const CpuFeatures& cpu_features();
bool parse_isa(const char* s, Isa* out);
// True when this build contains the variant and the CPU + OS support its instructions.
bool isa_available(Isa isa);
// The best available ISA, and the one used by default (best, or QK_FORCE_ISA when valid and available).
Isa best_isa();
Isa active_isa();
// Non-empty when QK_FORCE_ISA was set but could not be honoured.
const std::string& forced_isa_warning();
// The table for an available ISA, or nullptr.
const KernelTable* kernel_table(Isa isa);
const KernelTable& active_kernels();

}  // namespace qk

#endif  // QK_DISPATCH_H_
