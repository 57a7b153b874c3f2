// Machine limits for quantkit's benchmark harness (bench/limits.js builds and runs this; it is not part of the
// addon). Small loops at native speed:
//   bw   <threads> <MiB> <passes>   DRAM read bandwidth: every thread sums its own slice of one large buffer
//                                   (working set >> L3) with 512-bit (or 256-bit) loads; GB/s per pass
//   fma  <threads> <ms>             fp32 FMA peak: independent vfmadd231ps chains per thread         (GFLOP/s)
//   vnni <threads> <ms>             int8 dot-product peak: independent vpdpbusd chains (u8 x s8)     (GOP/s)
//   bf16 <threads> <ms>             bf16 dot-product peak: independent vdpbf16ps chains              (GFLOP/s)
// Add "avx2" as the last argument for the 256-bit variants (fma: ymm FMA; vnni: AVX-VNNI ymm). One JSON object is
// printed on stdout. Ops conventions: an FMA lane = 2 flops; vpdpbusd = 4 multiply-adds per int32 lane = 8 ops;
// vdpbf16ps = 2 multiply-adds per fp32 lane = 4 flops (the same 2*M*N*K convention as the GEMM figures).
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs fn(thread_index) on `threads` threads released together; returns the wall time of the slowest.
template <class F>
static double run_threads(int threads, F fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> secs(threads, 0.0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; t++) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      auto t0 = Clock::now();
      fn(t);
      secs[t] = seconds_since(t0);
    });
  }
  while (ready.load() < threads) {
  }
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  return *std::max_element(secs.begin(), secs.end());
}

// ---------------------------------------------------------------------------------------------------------------
// DRAM read bandwidth

__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 24));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  uint64_t lanes[8];
  _mm512_storeu_si512(lanes, a0);
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  return s;
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i*)lanes, a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

static int bench_bw(int threads, size_t mib, int passes, bool avx2) {
  const size_t bytes = mib << 20;
  const size_t words = bytes / 8;
  uint64_t* buf = static_cast<uint64_t*>(std::aligned_alloc(4096, bytes));
  if (!buf) {
    std::printf("{\"error\":\"cannot allocate %zu MiB\"}\n", mib);
    return 1;
  }
  // Touch every page from the thread that will read it (first touch), with non-zero data.
  const size_t per = (words / threads) & ~size_t(63);
  run_threads(threads, [&](int t) {
    uint64_t* p = buf + per * t;
    for (size_t i = 0; i < per; i++) p[i] = i * 0x9E3779B97F4A7C15ull + t;
  });
  std::vector<double> gbs;
  volatile uint64_t sink = 0;
  std::vector<uint64_t> partial(threads);
  for (int r = 0; r < passes; r++) {
    double s = run_threads(threads, [&](int t) {
      const uint64_t* p = buf + per * t;
      partial[t] = avx2 ? sum_avx2(p, per) : sum_avx512(p, per);
    });
    for (int t = 0; t < threads; t++) sink = sink + partial[t];
    gbs.push_back(double(per) * 8 * threads / s / 1e9);
  }
  std::printf("{\"mode\":\"bw\",\"isa\":\"%s\",\"threads\":%d,\"mib\":%zu,\"passes\":[", avx2 ? "avx2" : "avx512", threads, mib);
  for (size_t i = 0; i < gbs.size(); i++) std::printf("%s%.3f", i ? "," : "", gbs[i]);
  std::printf("],\"unit\":\"GB/s\",\"check\":%llu}\n", (unsigned long long)(sink & 0xff));
  std::free(buf);
  return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Compute peaks: independent accumulator chains in inline assembly (so that the compiler can neither spill nor
// reorder them): 24 zmm chains for 512-bit (enough for latency x ports of every unit here; vdpbf16ps needed more
// than 16), 12 ymm chains for 256-bit (16 ymm registers). Sources are two broadcast registers; values stay finite
// and normal (accumulators grow by ~1e-6 per step; integer sums wrap).

#define R12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define R24(M) R12(M) M(12) M(13) M(14) M(15) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23)
#define ZERO_Z(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define ZERO_Y(i) "vpxor %%ymm" #i ", %%ymm" #i ", %%ymm" #i "\n\t"
#define FMA_Z(i) "vfmadd231ps %%zmm31, %%zmm30, %%zmm" #i "\n\t"
#define FMA_Y(i) "vfmadd231ps %%ymm15, %%ymm14, %%ymm" #i "\n\t"
#define VNNI_Z(i) "vpdpbusd %%zmm31, %%zmm30, %%zmm" #i "\n\t"
#define VNNI_Y(i) "%{vex%} vpdpbusd %%ymm15, %%ymm14, %%ymm" #i "\n\t"
#define BF16_Z(i) "vdpbf16ps %%zmm31, %%zmm30, %%zmm" #i "\n\t"

#define CLOBBER_Z                                                                                                 \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31", "cc"
#define CLOBBER_Y \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc"

static const uint32_t kSrc = 0x3c233c23u;  // as fp32: ~0.00996; as two bf16: 0.00996 each; as bytes: 0x23, 0x3c

__attribute__((target("avx512f"))) static void fma_zmm(uint64_t iters) {
  __asm__ volatile("vpbroadcastd %[s], %%zmm30\n\tvpbroadcastd %[s], %%zmm31\n\t" R24(ZERO_Z) "1:\n\t" R24(FMA_Z) "dec %[n]\n\tjnz 1b\n\t"
                   : [n] "+r"(iters)
                   : [s] "m"(kSrc)
                   : CLOBBER_Z);
}

__attribute__((target("avx2,fma"))) static void fma_ymm(uint64_t iters) {
  __asm__ volatile("vpbroadcastd %[s], %%ymm14\n\tvpbroadcastd %[s], %%ymm15\n\t" R12(ZERO_Y) "1:\n\t" R12(FMA_Y) "dec %[n]\n\tjnz 1b\n\tvzeroupper\n\t"
                   : [n] "+r"(iters)
                   : [s] "m"(kSrc)
                   : CLOBBER_Y);
}

__attribute__((target("avx512f,avx512vnni"))) static void vnni_zmm(uint64_t iters) {
  __asm__ volatile("vpbroadcastd %[s], %%zmm30\n\tvpbroadcastd %[s], %%zmm31\n\t" R24(ZERO_Z) "1:\n\t" R24(VNNI_Z) "dec %[n]\n\tjnz 1b\n\t"
                   : [n] "+r"(iters)
                   : [s] "m"(kSrc)
                   : CLOBBER_Z);
}

__attribute__((target("avx2,avxvnni"))) static void vnni_ymm(uint64_t iters) {
  __asm__ volatile("vpbroadcastd %[s], %%ymm14\n\tvpbroadcastd %[s], %%ymm15\n\t" R12(ZERO_Y) "1:\n\t" R12(VNNI_Y) "dec %[n]\n\tjnz 1b\n\tvzeroupper\n\t"
                   : [n] "+r"(iters)
                   : [s] "m"(kSrc)
                   : CLOBBER_Y);
}

__attribute__((target("avx512f,avx512bf16"))) static void bf16_zmm(uint64_t iters) {
  __asm__ volatile("vpbroadcastd %[s], %%zmm30\n\tvpbroadcastd %[s], %%zmm31\n\t" R24(ZERO_Z) "1:\n\t" R24(BF16_Z) "dec %[n]\n\tjnz 1b\n\t"
                   : [n] "+r"(iters)
                   : [s] "m"(kSrc)
                   : CLOBBER_Z);
}

static int bench_compute(const std::string& mode, int threads, double ms, bool avx2) {
  void (*kernel)(uint64_t) = nullptr;
  const double chains = avx2 ? 12 : 24;  // instructions per loop iteration
  double ops_per_iter = 0;                // per thread and loop iteration
  if (mode == "fma") {
    kernel = avx2 ? fma_ymm : fma_zmm;
    ops_per_iter = chains * (avx2 ? 8 : 16) * 2;
  } else if (mode == "vnni") {
    kernel = avx2 ? vnni_ymm : vnni_zmm;
    ops_per_iter = chains * (avx2 ? 8 : 16) * 8;
  } else if (mode == "bf16") {
    if (avx2) {
      std::printf("{\"error\":\"no 256-bit bf16 variant\"}\n");
      return 1;
    }
    kernel = bf16_zmm;
    ops_per_iter = chains * 16 * 4;
  } else {
    std::printf("{\"error\":\"unknown mode %s\"}\n", mode.c_str());
    return 1;
  }
  // Calibrate the iteration count on one thread (also warms the unit up: AVX-512 frequency licence).
  uint64_t iters = 1 << 16;
  for (;;) {
    auto t0 = Clock::now();
    kernel(iters);
    double s = seconds_since(t0);
    if (s > 0.02) {
      iters = uint64_t(double(iters) * (ms / 1000.0 / 5) / s) + 1;
      break;
    }
    iters *= 4;
  }
  std::vector<double> rates;
  for (int r = 0; r < 5; r++) {
    double s = run_threads(threads, [&](int) { kernel(iters); });
    rates.push_back(ops_per_iter * double(iters) * threads / s / 1e9);
  }
  std::printf("{\"mode\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"passes\":[", mode.c_str(), avx2 ? "avx2" : "avx512", threads);
  for (size_t i = 0; i < rates.size(); i++) std::printf("%s%.3f", i ? "," : "", rates[i]);
  std::printf("],\"unit\":\"%s\"}\n", mode == "vnni" ? "GOP/s" : "GFLOP/s");
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: limits bw <threads> <MiB> <passes> [avx2] | limits fma|vnni|bf16 <threads> <ms> [avx2]\n");
    return 2;
  }
  std::string mode = argv[1];
  int threads = std::max(1, std::atoi(argv[2]));
  bool avx2 = std::string(argv[argc - 1]) == "avx2";
  if (mode == "bw") {
    if (argc < 5) return 2;
    return bench_bw(threads, size_t(std::atoll(argv[3])), std::atoi(argv[4]), avx2);
  }
  return bench_compute(mode, threads, argc > 3 ? std::atof(argv[3]) : 1000, avx2);
}
