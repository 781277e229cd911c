// Whether this machine's memory streams at one speed: POOLS buffers of 256 MiB, allocated and
// filled together in one process (on transparent huge pages unless --small-pages), each read
// whole in turn, ROUNDS times over. Prints each pool's GB/s over the rounds (12 samples) and its
// median. One thread, no dmap code: the machine alone.
//
//   build/tests/bench/pool_bench 8 30             8 pools, 30 rounds
//   build/tests/bench/pool_bench 8 30 --small-pages
//
// On the AMD EPYC VM (2026-12-06) pools read in turn, within milliseconds of each other, kept
// levels 20-37 GB/s apart for the whole run, on huge pages; on 4 KiB pages all read ~21 GB/s —
// which memory a run is given decides part of its speed (docs/PERFORMANCE.md, thirteenth session).
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

typedef uint64_t V __attribute__((vector_size(64)));

int main(int argc, char** argv) {
  const int pools = argc > 1 ? std::atoi(argv[1]) : 8;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 30;
  const bool huge = !(argc > 3 && std::string(argv[3]) == "--small-pages");
  if (pools < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: pool_bench POOLS ROUNDS [--small-pages]\n");
    return 2;
  }
  const size_t bytes = size_t{256} << 20, words = bytes / sizeof(uint64_t);
  std::vector<uint64_t*> p(static_cast<size_t>(pools));
  for (auto& q : p) {
    void* m = nullptr;
    if (::posix_memalign(&m, size_t{2} << 20, bytes) != 0) return 1;
    if (huge) ::madvise(m, bytes, MADV_HUGEPAGE);
    std::memset(m, 1, bytes);
    q = static_cast<uint64_t*>(m);
  }
  uint64_t sink = 0;
  std::vector<std::vector<double>> gbs(p.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < p.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      // Generic vectors (whatever the build's ISA): 4 x 64 bytes per step, so the loop outruns memory.
      V a0{}, a1{}, a2{}, a3{};
      const V* q = reinterpret_cast<const V*>(p[i]);
      for (size_t k = 0; k < words / 8; k += 4) a0 += q[k], a1 += q[k + 1], a2 += q[k + 2], a3 += q[k + 3];
      const V a = a0 + a1 + a2 + a3;
      for (int l = 0; l < 8; ++l) sink += a[l];
      gbs[i].push_back(static_cast<double>(bytes) / 1e9 /
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::printf("%d pools of 256 MiB on %s pages, %d rounds (GB/s; 12 samples over the run, then the median)\n", pools,
              huge ? "huge" : "4 KiB", rounds);
  for (size_t i = 0; i < p.size(); ++i) {
    std::printf("pool %zu:", i);
    const size_t step = std::max<size_t>(1, gbs[i].size() / 12);
    for (size_t k = 0; k < gbs[i].size(); k += step) std::printf(" %.0f", gbs[i][k]);
    std::vector<double> v = gbs[i];
    std::sort(v.begin(), v.end());
    std::printf("  | median %.1f\n", v[v.size() / 2]);
    std::free(p[i]);
  }
  return sink == 42 ? 3 : 0;  // keeps the sums
}
