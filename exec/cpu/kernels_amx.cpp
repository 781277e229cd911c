// AMX (tiles + BF16) prefill GEMM for bfloat16 weights: C^T = W x^T on 16x16 float32 tiles. W's
// rows are the A tiles, loaded straight from the (mapped) weight with stride K; x is packed once
// per call into VNNI pairs (the B tiles). Each thread owns 32 rows of W at a time and keeps a
// 2 x 2 block of C tiles over the whole K. x is rounded to bfloat16 on packing: exact for the
// executor, whose activations are already bfloat16 values when the weights are bfloat16.
// (Packing W's rows tile by tile first was measured slower end to end: TinyLlama bf16 prefill
// 0.375 -> 0.414 s, although some isolated shapes gained.)
//
// Built with -mamx-tile -mamx-bf16 only: with -mavx512f in this file GCC used zmm registers in
// the packing loops, and the legacy-SSE scalar code running after it (libm exp) became 20x
// slower (measured).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "exec/cpu/kernels.h"

namespace dmap::exec::cpu::amx {

namespace {

constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool detect() {
  if (const char* off = std::getenv("DMAP_NO_AMX"); off && *off && *off != '0') return false;  // opt out
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = d & (1u << 24), bf16 = d & (1u << 22);
  if (!tile || !bf16) return false;
  // The kernel must grant the process the tile state (Linux >= 5.16).
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

uint16_t to_bf16(float v) { return f32_to_bf16(v); }

}  // namespace

bool available() {
  static const bool ok = detect();
  return ok;
}

bool linear_bf16(const float* x, int64_t M, const Weight& w, const float* bias, float* y, int threads) {
  const int64_t K = w.cols, N = w.rows;
  if (!available() || w.type != DType::kBFloat16 || K % 32 != 0 || N % 32 != 0 || M < 16) return false;
  const int64_t mblocks = (M + 15) / 16, kblocks = K / 32;
  // Packed x^T in VNNI pairs: per (m-block, k-block) a 16 x 64-byte tile, row r = for each of the
  // 16 rows m of x the pair x[m][2r], x[m][2r+1]; rows beyond M are zero.
  // Reused across calls: a fresh multi-megabyte buffer per product cost page faults and zeroing
  // (4 % of a prefill, measured with perf).
  static thread_local std::vector<uint32_t> packed;
  if (packed.size() < static_cast<size_t>(mblocks * kblocks * 256))
    packed.resize(static_cast<size_t>(mblocks * kblocks * 256));
  uint32_t* const pk = packed.data();
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t mb = 0; mb < mblocks; ++mb) {
    for (int64_t kb = 0; kb < kblocks; ++kb) {
      uint32_t* tile = pk + (mb * kblocks + kb) * 256;
      for (int64_t mm = 0; mm < 16; ++mm) {
        const int64_t m = mb * 16 + mm;
        if (m >= M) {
          for (int r = 0; r < 16; ++r) tile[r * 16 + mm] = 0;  // padding rows
          continue;
        }
        const float* row = x + m * K + kb * 32;
        for (int r = 0; r < 16; ++r) {
          tile[r * 16 + mm] =
              static_cast<uint32_t>(to_bf16(row[2 * r])) | (static_cast<uint32_t>(to_bf16(row[2 * r + 1])) << 16);
        }
      }
    }
  }
  const auto* wd = static_cast<const uint16_t*>(w.data);
  const int64_t nblocks = N / 32;
  const int64_t stride = K * 2;  // bytes between rows of W
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    configure();
    alignas(64) float c[4][16 * 16];
#pragma omp for schedule(static)
    for (int64_t nb = 0; nb < nblocks; ++nb) {
      const int64_t n0 = nb * 32;
      // The next block of W rows is prefetched while this one is used: a quarter... of its rows
      // per pass over the m-blocks, one cache line per row and k-block.
      const int64_t passes = (mblocks + 1) / 2;
      const bool prefetch_next = nb + 1 < nblocks;
      for (int64_t mb = 0; mb < mblocks; mb += 2) {
        const bool two_m = mb + 1 < mblocks;
        const int64_t pass = mb / 2;
        const int64_t pf_lo = n0 + 32 + 32 * pass / passes, pf_hi = n0 + 32 + 32 * (pass + 1) / passes;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t kb = 0; kb < kblocks; ++kb) {
          if (prefetch_next) {
            for (int64_t r = pf_lo; r < pf_hi; ++r) __builtin_prefetch(wd + r * K + kb * 32, 0, 2);
          }
          _tile_loadd(4, wd + n0 * K + kb * 32, stride);         // W rows n0..n0+15
          _tile_loadd(5, wd + (n0 + 16) * K + kb * 32, stride);  // W rows n0+16..n0+31
          _tile_loadd(6, pk + (mb * kblocks + kb) * 256, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 5, 6);
          if (two_m) {
            _tile_loadd(7, pk + ((mb + 1) * kblocks + kb) * 256, 64);
            _tile_dpbf16ps(2, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        if (two_m) {
          _tile_stored(2, c[2], 64);
          _tile_stored(3, c[3], 64);
        }
        // c[t][n][m] holds C^T: write y[m][n] (+ bias).
        for (int t = 0; t < (two_m ? 4 : 2); ++t) {
          const int64_t nbase = n0 + (t % 2) * 16, mbase = (mb + t / 2) * 16;
          for (int64_t mm = 0; mm < 16 && mbase + mm < M; ++mm) {
            float* out = y + (mbase + mm) * N + nbase;
            for (int nn = 0; nn < 16; ++nn) out[nn] = c[t][nn * 16 + mm] + (bias ? bias[nbase + nn] : 0.0f);
          }
        }
      }
    }
    _tile_release();
  }
  return true;
}

}  // namespace dmap::exec::cpu::amx
