// Work split into one contiguous range per thread of an OpenMP team: the executor's elementwise
// passes (exec/cpu_model.cpp) and its disk reads (exec/disk_reader.cpp) both go through here.
#pragma once

#include <algorithm>
#include <cstdint>

#include <omp.h>

namespace dmap::exec {

// Runs fn(lo, hi) over [0, n) split into one contiguous range per thread, each range's ends on
// multiples of `align` (but the last, which ends at n), serially when the work is small: a
// team of min(threads, n / min_per_thread) threads, one parallel region only when that is 2 or
// more (a parallel region costs a few microseconds). Inside fn, omp_get_thread_num() is the
// range's index (0 when serial). The elementwise passes between the matrix products went through
// here after perf showed them running on one core while the other spun in libgomp (TinyLlama bf16
// prefill: about a fifth of the time); disk reads split at 4 KiB (page) boundaries.
template <class Fn>
void parallel_ranges(int64_t n, int64_t min_per_thread, int threads, Fn&& fn, int64_t align = 1) {
  const int64_t useful = std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread));
  const int team = static_cast<int>(std::min<int64_t>(std::max(1, threads), useful));
  if (team <= 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(team)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const auto end = [&](int64_t k) { return k == nt ? n : std::min(n, n * k / nt / align * align); };
    const int64_t lo = end(t);
    fn(lo, std::max(lo, end(t + 1)));
  }
}

}  // namespace dmap::exec
