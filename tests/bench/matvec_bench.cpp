// dmap's one-row products, timed as llama_probe --matvec times llama.cpp's (probes/llama_cpp):
// the same shape syntax, the same pool of weight copies (about 256 MiB, so each product reads
// DRAM), the same timing (one pass over the copies back to back, per product, median of the
// rounds) and the same JSON — so that tests/bench/run_matvec_ab.sh can alternate the two
// programs within seconds and compare kernels without a whole model's noise.
//
//   build/tests/bench/matvec_bench bf16:2048:8192,f16:8192:2048 --threads 2 --rounds 9
//   ... --every-round   each round's GB/s too (how a freshly filled pool streams over time)
//   ... --ab-split      each round also with two threads split statically (exec/cpu/two_ended.h):
//                       gbs_static and the median of the rounds' ratios, on the same memory
//
// TYPE:N:K is an N x K weight (f32, f16 or bf16; K the row length), as llama_probe's.
// Weights are on huge pages as the executor's (exec/weights.cpp), x is one row of float32.
// --pool-mib M sizes the pool (default 256); a pool under the last-level cache times the kernel's
// arithmetic instead of DRAM.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/stats.h"
#include "exec/cpu/kernels.h"
#include "exec/cpu/two_ended.h"
#include "exec/exec_dtype.h"

using namespace dmap;

namespace {

struct Shape {
  std::string name;
  DType type;
  int64_t n, k;
};

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "matvec_bench: %s\n", m.c_str());
  std::exit(2);
}

std::vector<Shape> parse(const std::string& spec) {
  std::vector<Shape> out;
  size_t at = 0;
  while (at <= spec.size()) {
    const size_t end = std::min(spec.find(',', at), spec.size());
    const std::string item = spec.substr(at, end - at);
    const size_t a = item.find(':'), b = item.rfind(':');
    if (a == std::string::npos || a == b) die("expected TYPE:N:K, not '" + item + "'");
    Shape s;
    s.name = item.substr(0, a);
    if (s.name == "f32")
      s.type = DType::kFloat32;
    else if (s.name == "f16")
      s.type = DType::kFloat16;
    else if (s.name == "bf16")
      s.type = DType::kBFloat16;
    else
      die("type f32, f16 or bf16, not '" + s.name + "'");
    s.n = std::atoll(item.substr(a + 1, b - a - 1).c_str());
    s.k = std::atoll(item.substr(b + 1).c_str());
    if (s.n < 1 || s.k < 1) die("N and K must be positive in '" + item + "'");
    out.push_back(s);
    at = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: matvec_bench TYPE:N:K,... [--threads T] [--rounds R] [--pool-mib M] [--every-round]");
  const std::vector<Shape> shapes = parse(argv[1]);
  int threads = 2, rounds = 5;
  size_t pool_mib = 256;
  bool every_round = false, ab_split = false;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--every-round" || a == "--ab-split") {
      (a == "--ab-split" ? ab_split : every_round) = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) die(a + " needs a value");
    if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (a == "--rounds")
      rounds = std::atoi(argv[i + 1]);
    else if (a == "--pool-mib")
      pool_mib = static_cast<size_t>(std::atoll(argv[i + 1]));
    else
      die("unknown option " + a);
  }
  std::printf("{\"dmap\": \"%s\", \"threads\": %d, \"matvec\": [", exec::cpu::isa_name(exec::cpu::best_isa()).c_str(),
              threads);
  // DMAP_WEIGHT_PAGES=small: the pool on 4 KiB pages, as exec/weights.cpp then puts weights
  const char* pages = std::getenv("DMAP_WEIGHT_PAGES");
  const bool small_pages = pages && std::string(pages) == "small";
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    const size_t bytes = static_cast<size_t>(s.n * s.k) * exec::elt_size(s.type);
    const int copies = static_cast<int>(std::clamp<size_t>((pool_mib << 20) / bytes + 1, 1, 512));
    const size_t stride = (bytes + 4095) / 4096 * 4096;
    void* mem = nullptr;
    if (::posix_memalign(&mem, size_t{2} << 20, stride * static_cast<size_t>(copies)) != 0) die("out of memory");
    if (!small_pages) ::madvise(mem, stride * static_cast<size_t>(copies), MADV_HUGEPAGE);
    auto* base = static_cast<uint8_t*>(mem);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    std::vector<uint8_t> one(bytes);
    for (size_t i = 0; i < bytes / exec::elt_size(s.type); ++i)
      exec::cpu::store(s.type, one.data(), static_cast<int64_t>(i), u(rng));
    for (int c = 0; c < copies; ++c) std::memcpy(base + stride * static_cast<size_t>(c), one.data(), bytes);
    std::vector<float> x(static_cast<size_t>(s.k), 0.01f), y(static_cast<size_t>(s.n));
    const auto pass = [&] {
      const auto t0 = std::chrono::steady_clock::now();
      for (int c = 0; c < copies; ++c) {
        const exec::cpu::Weight w{base + stride * static_cast<size_t>(c), s.type, s.n, s.k};
        exec::cpu::linear(x.data(), 1, w, nullptr, y.data(), threads);
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / copies;
    };
    std::vector<double> per, per_static, ratios;
    for (int r = -1; r < rounds; ++r) {  // one untimed pass first
      if (!ab_split) {
        const double t = pass();
        if (r >= 0) per.push_back(t);
        continue;
      }
      // --ab-split: the two-ended split and the static one in turn (order alternating by round)
      double t2 = 0, ts = 0;
      for (int j = 0; j < 2; ++j) {
        const bool two = (j == 0) == (r % 2 == 0);
        exec::cpu::two_ended_on() = two;
        (two ? t2 : ts) = pass();
      }
      exec::cpu::two_ended_on() = true;
      if (r >= 0) per.push_back(t2), per_static.push_back(ts), ratios.push_back(ts / t2);
    }
    const double t = median(per);
    std::printf(
        "%s{\"type\": \"%s\", \"n\": %lld, \"k\": %lld, \"bytes\": %zu, \"copies\": %d, \"s\": %.9g, \"gbs\": %.6g",
        si ? ", " : "", s.name.c_str(), static_cast<long long>(s.n), static_cast<long long>(s.k), bytes, copies, t,
        static_cast<double>(bytes) / t / 1e9);
    if (ab_split)
      std::printf(", \"gbs_static\": %.6g, \"two_ended_over_static\": %.4g",
                  static_cast<double>(bytes) / median(per_static) / 1e9, median(ratios));
    if (every_round) {
      std::printf(", \"rounds_gbs\": [");
      for (size_t r = 0; r < per.size(); ++r)
        std::printf("%s%.4g", r ? ", " : "", static_cast<double>(bytes) / per[r] / 1e9);
      std::printf("]");
    }
    std::printf("}");
    std::free(mem);
  }
  std::printf("]}\n");
}
