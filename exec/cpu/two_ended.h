// Splitting a weight-streaming loop over threads so that the faster thread does more: with two
// threads, one takes chunks from the front of [0, n) and the other from the back until they meet,
// each streaming its part of the weights in address order; a thread slowed by the memory it reads
// (pages of another speed) or by the host takes fewer chunks instead of finishing last. Other
// thread counts split statically, as OpenMP's schedule(static) does.
//
//   two_ended(blocks, chunk_blocks, threads, [&](int64_t b0, int64_t b1) { ... blocks [b0, b1) ... });
//
// Why not OpenMP's dynamic schedule: it interleaves the threads' chunks, so that neither streams
// its memory in order (measured on the AMD EPYC VM, 2 threads: float16 one-row products at 0.44-0.75
// of static's rate, bfloat16 0.83-0.98).
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace dmap::exec::cpu {

// On unless the environment has DMAP_SPLIT=static; off, two threads split statically too
// (tests/bench/matvec_bench --ab-split compares the two on the same memory, round by round).
inline std::atomic<bool>& two_ended_on() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("DMAP_SPLIT");
    return !(e && std::string(e) == "static");
  }()};
  return on;
}

// Chunks of about `bytes` of weights (at least one unit), and at least 8 of them where there are
// that many units, so that a small weight still splits.
inline int64_t chunk_units(int64_t units, int64_t unit_bytes, int64_t bytes = int64_t{512} << 10) {
  return std::max<int64_t>(1, std::min(bytes / std::max<int64_t>(unit_bytes, 1), units / 8));
}

template <class Body>
void two_ended(int64_t n, int64_t chunk, int threads, Body&& body) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (threads <= 1 || chunks == 1) {
    body(int64_t{0}, n);
    return;
  }
  if (threads != 2 || !two_ended_on().load(std::memory_order_relaxed)) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) body(c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
  // One count of claimed chunks: the front thread's k-th claim is chunk k from the front, the
  // back thread's from the back, so that the C claims cover the C chunks once each.
  std::atomic<int64_t> claimed{0};
#pragma omp parallel num_threads(2)
  {
    const bool front = omp_get_thread_num() == 0;
    int64_t next = front ? 0 : chunks - 1;
    while (claimed.fetch_add(1, std::memory_order_relaxed) < chunks) {
      body(next * chunk, std::min(n, (next + 1) * chunk));
      next += front ? 1 : -1;
    }
  }
}

}  // namespace dmap::exec::cpu
