// The CPU profiler's micro-benchmarks (see probes.h), and the attention fit over their timings.
#include "profile/probes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/module_tree.h"
#include "core/yaml_io.h"
#include "profile/fit.h"
#include "profile/yaml_text.h"
#include "report/svg.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "strategies/plan.h"

#include "exec/backend.h"
#include "exec/disk_reader.h"
#include "exec/map_placement.h"

namespace dmap::profile {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t dram_pool_bytes(size_t at_least) {
  if (const char* e = std::getenv("DMAP_PROFILE_POOL_MIB"); e && *e) {
    const long long mib = std::atoll(e);
    if (mib > 0) return static_cast<size_t>(mib) << 20;
  }
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const size_t four_caches = l3 > 0 ? 4 * static_cast<size_t>(l3) : 0;
  return std::max(at_least, std::min(four_caches, size_t{4} << 30));
}

const uint8_t* WeightStore::get(DType d, size_t bytes) {
  for (const auto& b : buffers_[d]) {
    if (b->size() >= bytes) return b->data();
  }
  std::vector<uint8_t>& buf = *buffers_[d].emplace_back(std::make_unique<std::vector<uint8_t>>(bytes));
  // One random block repeated: the values do not matter for timing, only that they are ordinary
  // numbers (no denormals or NaNs).
  std::vector<uint8_t> block(std::min<size_t>(buf.size(), 1u << 20));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (size_t i = 0; i < block.size() / exec::elt_size(d); ++i) {
    const float v = u(rng);
    if (d == DType::kFloat32) {
      std::memcpy(block.data() + i * 4, &v, 4);
    } else {
      const uint16_t h = d == DType::kBFloat16 ? exec::cpu::f32_to_bf16(v) : exec::cpu::f32_to_f16(v);
      std::memcpy(block.data() + i * 2, &h, 2);
    }
  }
  for (size_t o = 0; o < buf.size(); o += block.size()) {
    std::memcpy(buf.data() + o, block.data(), std::min(block.size(), buf.size() - o));
  }
  return buf.data();
}

WeightPool::WeightPool(WeightStore& store, DType d, int64_t n, int64_t k, size_t pool_bytes) : d_(d), n_(n), k_(k) {
  bytes_ = static_cast<size_t>(n * k) * exec::elt_size(d);
  copies_ = std::max<size_t>(2, pool_bytes / std::max<size_t>(1, bytes_));
  // The whole pool's size (not this shape's whole copies), so that every shape asking for the same
  // pool size shares one buffer.
  data_ = store.get(d, std::max(pool_bytes, copies_ * bytes_));
}

// Median seconds of `reps` products y = x W^T with M rows.
double time_linear(WeightPool& pool, int64_t M, int threads, int reps) {
  const exec::cpu::Weight w0 = pool.next();
  std::vector<float> x(static_cast<size_t>(M * w0.cols)), y(static_cast<size_t>(M * w0.rows));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x) v = exec::cpu::round_bf16(u(rng));
  exec::cpu::linear(x.data(), M, w0, nullptr, y.data(), threads);  // warm-up (thread team, buffers)
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const exec::cpu::Weight w = pool.next();
    const auto t0 = Clock::now();
    exec::cpu::linear(x.data(), M, w, nullptr, y.data(), threads);
    t.push_back(since(t0));
  }
  return median(t);
}

WeightsRead read_weights(const exec::ModelWeights& w, int threads) {
  // Generic vectors (the build's ISA), four per step, so the loop outruns memory; each tensor is
  // split over the threads in whole vectors, its tail summed alone.
  typedef uint64_t V __attribute__((vector_size(64)));
  std::vector<const exec::WeightRef*> refs;
  double bytes = 0;
  for (const std::string& n : w.names()) {
    const exec::WeightRef& r = w.get(n);
    if (r.on_disk || !r.w.data) continue;
    refs.push_back(&r);
    bytes += static_cast<double>(exec::weight_bytes(r.w));
  }
  uint64_t sink = 0;
  const auto t0 = Clock::now();
  for (const exec::WeightRef* r : refs) {
    const auto* p = static_cast<const uint8_t*>(r->w.data);
    const size_t n = exec::weight_bytes(r->w);
    const size_t head = std::min(n, static_cast<size_t>((64 - reinterpret_cast<uintptr_t>(p) % 64) % 64));
    for (size_t i = 0; i < head; ++i) sink += p[i];
    const auto* v = reinterpret_cast<const V*>(p + head);
    const int64_t vecs = static_cast<int64_t>((n - head) / sizeof(V));
    uint64_t part = 0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : part) if (threads > 1 && vecs > 4096)
    for (int64_t b = 0; b < vecs; b += 1024) {
      V a0{}, a1{}, a2{}, a3{};
      const int64_t e = std::min(vecs, b + 1024);
      int64_t k = b;
      for (; k + 4 <= e; k += 4) a0 += v[k], a1 += v[k + 1], a2 += v[k + 2], a3 += v[k + 3];
      for (; k < e; ++k) a0 += v[k];
      const V a = a0 + a1 + a2 + a3;
      for (int l = 0; l < 8; ++l) part += a[l];
    }
    sink += part;
    for (size_t i = head + static_cast<size_t>(vecs) * sizeof(V); i < n; ++i) sink += p[i];
  }
  WeightsRead out{bytes, since(t0)};
  volatile uint64_t keep = sink;  // the sums are used
  (void)keep;
  return out;
}

double reference_probe_ms(int threads, int reads, DType dtype) {
  // The probe's own memory per dtype, kept for the process (validation probes often): 32 MiB
  // per copy in every dtype (4096 x 2048 float32, 4096 x 4096 in 16 bits).
  struct Probe {
    WeightStore store;
    std::unique_ptr<WeightPool> pool;
  };
  static std::map<DType, Probe> probes;
  Probe& p = probes[dtype];
  if (!p.pool) {
    const int64_t k = dtype == DType::kFloat32 ? 2048 : 4096;
    p.pool = std::make_unique<WeightPool>(p.store, dtype, 4096, k, dram_pool_bytes(size_t{128} << 20));
  }
  time_linear(*p.pool, 1, threads, static_cast<int>(p.pool->copies()));  // the pass over the pool
  return time_linear(*p.pool, 1, threads, reads) * 1e3;
}

double page_cache_probe_gbs(int threads) {
  struct Probe {
    size_t bytes = size_t{64} << 20;
    int fd = -1;
    std::unique_ptr<uint8_t[]> buf;
    Probe() {
      std::string path = (std::filesystem::temp_directory_path() / "dmap_page_cache_probe_XXXXXX").string();
      fd = ::mkstemp(path.data());
      if (fd < 0)
        throw RuntimeFailure("cannot create the page-cache probe's file " + path + ": " + std::strerror(errno));
      ::unlink(path.c_str());  // the descriptor keeps it for the process
      std::vector<char> block(1 << 20);
      std::mt19937 rng(13);
      for (auto& c : block) c = static_cast<char>(rng());
      bool ok = true;
      for (size_t w = 0; w < bytes && ok; w += block.size()) {
        ok = ::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size());
      }
      // Written back now, so that no writeback runs under a probe later.
      if (!ok || ::fdatasync(fd) != 0) throw RuntimeFailure("cannot write the page-cache probe's file " + path);
      buf.reset(new uint8_t[bytes]);
      exec::pread_in_slices(fd, 0, buf.get(), bytes, 1, "the page-cache probe", path);  // not timed
    }
    ~Probe() {
      if (fd >= 0) ::close(fd);
    }
  };
  static Probe probe;
  std::vector<double> t;
  for (int k = 0; k < 5; ++k) {
    const auto t0 = Clock::now();
    exec::pread_in_slices(probe.fd, 0, probe.buf.get(), probe.bytes, threads, "the page-cache probe", "its file");
    t.push_back(since(t0));
  }
  return static_cast<double>(probe.bytes) / median(t) / 1e9;
}

// Reads of 0.25..64 MiB tensors from scratch files: cold (evicted from the page cache first) and warm.
DiskFit measure_disk(const std::string& dir, bool quick, int threads, const ProgressFn& progress) {
  namespace fs = std::filesystem;
  const fs::path folder = fs::path(dir) / ("dmap_profile_disk_" + std::to_string(getpid()));
  const RemoveOnInterrupt guard(folder.string());
  fs::create_directories(folder);
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{folder};
  // Sizes of the tensors a layer holds (0.25 .. 64 MiB), each read several times: a cold read's
  // time varies by tens of percent on network-backed disks. One file per read, written and
  // flushed first, read as the executor reads a disk-offloaded tensor's file (exec::DiskReader:
  // cold, its pages evicted and copied back out of the file's map; warm, by pread()).
  const std::vector<size_t> sizes =
      quick ? std::vector<size_t>{1u << 20, 4u << 20, 16u << 20}
            : std::vector<size_t>{1u << 18, 1u << 20, 2u << 20, 4u << 20, 8u << 20, 16u << 20, 32u << 20, 64u << 20};
  const int reps = quick ? 2 : 5;
  std::vector<char> block(1 << 20);
  std::mt19937 rng(11);
  for (auto& c : block) c = static_cast<char>(rng());
  // A file of s bytes (the block repeated), written back to the disk, as a float32 tensor's ref.
  auto probe_file = [&](const std::string& name, const std::string& leaf, size_t s) {
    exec::WeightRef ref;
    ref.name = name;
    ref.file = (folder / leaf).string();
    ref.w.type = DType::kFloat32;
    ref.w.rows = 1;
    ref.w.cols = static_cast<int64_t>(s / 4);
    const int fd = ::open(ref.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw RuntimeFailure("cannot write the disk probe file " + ref.file + ": " + std::strerror(errno));
    bool ok = true;
    for (size_t w = 0; w < s && ok; w += block.size()) {
      const size_t n = std::min(block.size(), s - w);
      ok = ::write(fd, block.data(), n) == static_cast<ssize_t>(n);
    }
    ok = ::fdatasync(fd) == 0 && ok;
    if (::close(fd) != 0 || !ok) throw RuntimeFailure("cannot write the disk probe file " + ref.file);
    return ref;
  };
  std::vector<exec::WeightRef> files;
  for (size_t s : sizes) {
    for (int r = 0; r < reps; ++r) files.push_back(probe_file("disk probe", std::to_string(files.size()) + ".dat", s));
  }
  exec::DiskReader reader;
  std::vector<char> buf(sizes.back());
  std::vector<double> xb, cold, wb, warm;
  int step = 0;
  for (const auto& ref : files) {
    if (progress) progress("disk reads", ++step, static_cast<int>(files.size()));
    const double bytes = static_cast<double>(exec::weight_bytes(ref.w));
    auto t0 = Clock::now();
    reader.read(ref, buf.data(), true, threads);
    cold.push_back(since(t0));
    xb.push_back(bytes);
    std::vector<double> again;  // now from the page cache: the median of three re-reads
    for (int k = 0; k < 3; ++k) {
      t0 = Clock::now();
      reader.read(ref, buf.data(), false, threads);
      again.push_back(since(t0));
    }
    warm.push_back(median(again));
    wb.push_back(bytes);
  }
  DiskFit f;
  f.cold = fit_line(xb, cold);
  f.warm = fit_line(wb, warm);
  f.samples = static_cast<int>(xb.size());
  // One large tensor, warm: from exec::kMapCopyBytes on the executor copies out of the file's map
  // (not by pread), at a rate of its own (MoE fused experts: 400-800 MB). Into a buffer like the
  // executor's disk buffer (2 MiB pages); the first copy maps the file and is not timed.
  {
    if (progress) progress("disk reads, one large tensor", 0, 1);
    const size_t s = quick ? exec::kMapCopyBytes + (size_t{32} << 20) : size_t{512} << 20;
    const exec::WeightRef ref = probe_file("disk probe (large)", "large.dat", s);
    exec::WeightBuffer dst = exec::weight_buffer(s);
    reader.read(ref, dst.get(), false, threads);
    std::vector<double> t, ratios;
    for (int k = 0; k < (quick ? 3 : 7); ++k) {
      const double probe = page_cache_probe_gbs(threads);
      const auto t0 = Clock::now();
      reader.read(ref, dst.get(), false, threads);
      t.push_back(since(t0));
      ratios.push_back(static_cast<double>(s) / t.back() / 1e9 / probe);
    }
    f.large_bytes = s;
    f.large_gbs = static_cast<double>(s) / median(t) / 1e9;
    f.large_probe_ratio = median(ratios);
    // Cold: evicted and read back by one thread, as the executor's cold prefill reads it. Large
    // reads stream faster than the 0.25-64 MiB files above (the kernel's readahead ramps up).
    t.clear();
    for (int k = 0; k < (quick ? 2 : 3); ++k) {
      const auto t0 = Clock::now();
      reader.read(ref, dst.get(), true, threads);
      t.push_back(since(t0));
    }
    f.large_cold_gbs = static_cast<double>(s) / median(t) / 1e9;
  }
  return f;
}

AttentionProbe measure_attention(const exec::ExecConfig& full, DType d, int threads, bool quick,
                                 const std::function<void(const std::string&)>& tick) {
  exec::ExecConfig c = full;
  c.layers = 1;
  c.inter = 16;
  c.vocab = 16;
  const std::vector<int64_t> contexts =
      quick ? std::vector<int64_t>{64, 512, 2048} : std::vector<int64_t>{64, 256, 1024, 2048, 4096};
  const std::vector<int64_t> prompts =
      quick ? std::vector<int64_t>{16, 64, 256} : std::vector<int64_t>{16, 64, 256, 512};
  const exec::ModelWeights w = exec::ModelWeights::random(c, d, 5);
  exec::RunOptions opt;
  opt.max_seq = std::max(contexts.back(), prompts.back());
  opt.threads = threads;
  exec::CpuModel m(c, w, opt);
  auto time_at = [&](int64_t T, int64_t start, int reps) {
    m.prepare(T, start);
    m.attention_only(0);  // warm-up: scratch buffers, cache pages
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      m.attention_only(0);
      t.push_back(since(t0));
    }
    return median(t);
  };
  AttentionProbe p;
  for (int64_t ctx : contexts) {
    tick("attention " + std::string(dtype_name(d)) + " decode, context " + std::to_string(ctx));
    const double t = time_at(1, ctx - 1, quick ? 9 : 25);
    p.decode.push_back({static_cast<double>(ctx), t});
  }
  for (int64_t T : prompts) {
    tick("attention " + std::string(dtype_name(d)) + " prefill, " + std::to_string(T) + " tokens");
    p.prefill.push_back({static_cast<double>(T), time_at(T, 0, quick ? 3 : 5)});
  }
  const AttentionFit f = fit_attention(c.heads, c.head_dim, p.decode, p.prefill);
  p.decode_fit = f.decode;
  p.overhead_s = f.overhead_s;
  p.curve = f.curve;
  return p;
}

DispatchProbe measure_dispatch(const exec::ExecConfig& full, DType d, int threads) {
  DispatchProbe p;
  exec::ExecConfig& c = p.config;
  c = full;
  c.hidden = 64;
  c.head_dim = 16;
  c.heads = 4;
  c.kv_heads = std::max<int64_t>(1, std::min<int64_t>(full.kv_heads, 2));
  c.inter = 128;
  c.vocab = 256;
  const exec::ModelWeights w = exec::ModelWeights::random(c, d, 9);
  p.weight_bytes = static_cast<double>(w.bytes());
  exec::RunOptions opt;
  opt.max_seq = 64;
  opt.threads = threads;
  exec::CpuModel m(c, w, opt);
  std::vector<int32_t> ids(16, 1);
  std::vector<float> logits(static_cast<size_t>(c.vocab));
  m.forward(ids.data(), 16, 0, logits.data());
  std::vector<double> t;
  int32_t next = 1;
  for (int64_t step = 0; step < 40; ++step) {
    const auto t0 = Clock::now();
    m.forward(&next, 1, 16 + step, logits.data());
    t.push_back(since(t0));
  }
  p.decode_s = median(t);
  return p;
}

AttentionFit fit_attention(int64_t heads, int64_t head_dim, const std::vector<std::pair<double, double>>& decode,
                           const std::vector<std::pair<double, double>>& prefill) {
  DMAP_CHECK(!decode.empty(), "fit_attention needs decode timings");
  std::vector<double> xs, ys;
  for (const auto& [ctx, t] : decode) {
    xs.push_back(ctx);
    ys.push_back(t);
  }
  AttentionFit f;
  f.decode = fit_line(xs, ys);
  f.overhead_s = std::max(0.0, f.decode.intercept);
  const double per_pair = 4.0 * static_cast<double>(heads * head_dim);
  const double slope = f.decode.slope > 0 ? f.decode.slope : ys.back() / xs.back();
  f.curve.push_back({1.0, per_pair / slope});
  for (const auto& [T, t] : prefill)
    f.curve.push_back({T, per_pair * T * (T + 1) / 2 / std::max(t - f.overhead_s, 0.1 * t)});
  return f;
}

}  // namespace dmap::profile
