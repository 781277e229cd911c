// How well the reference probe tracks whole-model decode on a drifting machine.
//
// Alternates, `rounds` times: reference probe, a CPU-only whole-model run of `model` (dtype),
// reference probe. Prints one line per round (probe before / after, decode ms/token) and then
// the spread of decode alone and of decode divided by the probe (the mean of the two around it),
// and their Pearson correlation. A probe that tracks the machine narrows the spread.
//
//   build/tests/bench/drift_bench tinyllama_1b float32 12 [threads]
//                                                 (also one timed read of each run's own weights
//                                                  before it: profile::read_weights; and the probes
//                                                  just around its decode, float32 and in its dtype:
//                                                  RunSettings::before_decode / after_decode)
//   build/tests/bench/drift_bench allocs tinyllama_1b float32 5 5  weights allocated 5 times, each
//                                                 decoded in 5 rounds: a state of the memory the
//                                                 weights landed in, or of the time?
//   build/tests/bench/drift_bench probe 60 30      the probe alone, 30 calls of 60 reads back to back
//   build/tests/bench/drift_bench copy float32     a warm disk read's cost in a decode step, by tensor size
//   build/tests/bench/drift_bench pagecache float32  the same through exec::DiskReader's page-cache path,
//                                                 the copy by 1 thread then by 2 (interleaved)
//   build/tests/bench/drift_bench knee float32 3     the product after a warm copy vs from DRAM, by size
//   build/tests/bench/drift_bench split tinyllama_1b float32 3  attention-only on disk vs whole layers
//   build/tests/bench/drift_bench cold 5         cold reads as the executor does them, 16-512 MiB
//   build/tests/bench/drift_bench disksteps qwen3_06b float32 14 3  what each tensor of a disk layer
//                                                 adds to a decode step (its steps on disk vs resident)
//   build/tests/bench/drift_bench steps tinyllama_1b bfloat16 12 [threads [calibration.yaml]]  a
//                                                 CPU-only decode step's time step by step
//                                                 (CpuModel::set_time_steps), summed over the layers:
//                                                 each product's GB/s, the rest; with a calibration, the
//                                                 cost model's price of each op beside it
//   build/tests/bench/drift_bench prefillsteps MODEL bfloat16 5 [threads [calibration.yaml]]  the
//                                                 same for 5 warm 64-token prefills
//   build/tests/bench/drift_bench moeparts MODEL bfloat16 64 5 [reach]  a MoE block's prefill
//                                                 part by part (router, routing, grouping, the
//                                                 expert products, the combination), routed
//                                                 over the first `reach` experts (all by default)
//   build/tests/bench/drift_bench rowsweep bfloat16 1536 2048 64 3  products of M = 1..16 rows by
//                                                 64 stacked matrices in turn
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/scenario.h"
#include "core/module_tree.h"
#include "core/stats.h"
#include "core/yaml_io.h"
#include "exec/config.h"
#include "exec/cpu/kernels.h"
#include "exec/cpu/moe.h"
#include "exec/cpu_model.h"
#include "exec/disk_reader.h"
#include "exec/exec_dtype.h"
#include "exec/weights.h"
#include "profile/probes.h"
#include "profile/profile.h"
#include "sim/calibration.h"
#include "sim/cost_model.h"
#include "sim/graph.h"
#include "sim/hardware.h"

using namespace dmap;

namespace {
double spread(std::vector<double> v) {
  double lo = v[0], hi = v[0];
  for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  return hi / lo;
}
double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}
// The copy-then-product modes' tensor shapes (4 to 134 MB in float32: Qwen3-0.6B's, Gemma-3-1B's and
// TinyLlama's among them) and their table.
const std::vector<std::pair<int64_t, int64_t>> kCopyShapes = {{1024, 1024}, {2048, 1024}, {3072, 1024}, {2048, 2048},
                                                              {6912, 1152}, {5632, 2048}, {8192, 2048}, {8192, 4096}};
const char* const kCopyHeader =
    "tensor (rows x cols)   MB  product_ms  copy_ms  copy+product_ms  extra_ms  extra GB/s  copy GB/s\n";

// One row: medians in seconds of the product alone, the copy alone, and the copy then the product.
void print_copy_row(int64_t n, int64_t k, size_t bytes, double p, double c, double b) {
  std::printf("%5lld x %-5lld %12.1f %10.3f %8.3f %16.3f %9.3f %11.2f %10.2f\n", static_cast<long long>(n),
              static_cast<long long>(k), static_cast<double>(bytes) / 1e6, p * 1e3, c * 1e3, b * 1e3, (b - p) * 1e3,
              static_cast<double>(bytes) / (b - p) / 1e9, static_cast<double>(bytes) / c / 1e9);
}

// What a disk-offloaded tensor read warm adds to a decode step, by tensor size: a one-row product
// on weights streamed from DRAM (a pool of copies past the caches), against a copy of the same
// bytes out of another pool (the page cache's role) into a reused buffer followed by the product
// on that buffer (the executor's warm disk read). Medians of 31, two threads.
void copy_then_product(DType d) {
  const size_t pool = size_t{2} << 30;
  std::vector<uint8_t> src(pool, 1), wts(pool, 1);
  for (size_t i = 0; i < pool; i += 4096) src[i] = wts[i] = static_cast<uint8_t>(i);
  const size_t es = d == DType::kFloat32 ? 4 : 2;
  std::printf("%s", kCopyHeader);
  for (auto [n, k] : kCopyShapes) {
    const size_t bytes = static_cast<size_t>(n * k) * es;
    const size_t copies = pool / bytes;
    std::vector<uint8_t> buf(bytes);
    std::vector<float> x(static_cast<size_t>(k), 0.5f), y(static_cast<size_t>(n));
    std::vector<double> prod, copy, both;
    size_t i = 0;
    auto clock = [] { return std::chrono::steady_clock::now(); };
    auto secs = [](auto t0, auto t1) { return std::chrono::duration<double>(t1 - t0).count(); };
    for (int r = 0; r < 31 + 1; ++r) {
      const uint8_t* w = wts.data() + (i % copies) * bytes;
      const uint8_t* s = src.data() + ((i + copies / 2) % copies) * bytes;
      ++i;
      auto t0 = clock();
      exec::cpu::linear(x.data(), 1, exec::cpu::Weight{w, d, n, k}, nullptr, y.data(), 2);
      auto t1 = clock();
      std::memcpy(buf.data(), s, bytes);
      exec::cpu::linear(x.data(), 1, exec::cpu::Weight{buf.data(), d, n, k}, nullptr, y.data(), 2);
      auto t3 = clock();
      const uint8_t* s2 = src.data() + ((i + copies / 3) % copies) * bytes;
      auto t4 = clock();
      std::memcpy(buf.data(), s2, bytes);
      auto t5 = clock();
      if (r == 0) continue;  // warm-up
      prod.push_back(secs(t0, t1));
      both.push_back(secs(t1, t3));
      copy.push_back(secs(t4, t5));
    }
    print_copy_row(n, k, bytes, median(prod), median(copy), median(both));
  }
}

// A file of `bytes` under /tmp, written and synced (the page-cache modes read it back); its path.
std::string write_synced_file(size_t bytes) {
  const std::string path = "/tmp/dmap_drift_bench_" + std::to_string(::getpid()) + ".dat";
  std::vector<uint8_t> block(size_t{1} << 20, 1);
  for (size_t i = 0; i < block.size(); i += 64) block[i] = static_cast<uint8_t>(i);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  for (size_t w = 0; w < bytes; w += block.size()) std::fwrite(block.data(), 1, block.size(), f);
  std::fflush(f);
  ::fdatasync(::fileno(f));
  std::fclose(f);
  return path;
}

// The same through the executor's real path: tensors of one 1 GiB file (written and synced
// once, then read once so the page cache and the map hold it), copied by exec::DiskReader warm
// into a reused buffer, each read at the next offset so the source comes from DRAM, then the
// product on the buffer; against the product on weights from a DRAM pool. Medians of 31. Each
// round copies twice, by one thread (the other a libgomp worker just out of the product) and
// by two, as the executor now copies: one table each.
void page_cache_then_product(DType d) {
  const size_t file_bytes = size_t{1} << 30;
  const std::string path = write_synced_file(file_bytes);
  const size_t es = d == DType::kFloat32 ? 4 : 2;
  const size_t pool_bytes = size_t{2} << 30;
  exec::WeightBuffer pool = exec::weight_buffer(pool_bytes);  // resident weights' pages
  std::memset(pool.get(), 1, pool_bytes);
  exec::DiskReader reader;
  struct Row {
    int64_t n, k;
    size_t bytes;
    double p, c, b;
  };
  std::vector<Row> rows[2];
  for (auto [n, k] : kCopyShapes) {
    const size_t bytes = static_cast<size_t>(n * k) * es;
    const size_t in_file = file_bytes / bytes, in_pool = pool_bytes / bytes;
    std::vector<uint8_t> buf(bytes);
    std::vector<float> x(static_cast<size_t>(k), 0.5f), y(static_cast<size_t>(n));
    auto ref_at = [&](size_t i) {
      exec::WeightRef r;
      r.name = "bench";
      r.file = path;
      r.offset = (i % in_file) * bytes;
      r.w = exec::cpu::Weight{nullptr, d, n, k};
      r.on_disk = true;
      return r;
    };
    for (size_t i = 0; i < in_file; ++i) reader.read(ref_at(i), buf.data(), false);  // page cache and map warm
    std::vector<double> prod, copy[2], both[2];
    auto secs = [](auto t0, auto t1) { return std::chrono::duration<double>(t1 - t0).count(); };
    for (size_t r = 0; r < 32; ++r) {
      for (int threads = 1; threads <= 2; ++threads) {
        const size_t at = 2 * r + static_cast<size_t>(threads - 1);
        const uint8_t* w = pool.get() + (at % in_pool) * bytes;
        const auto t0 = std::chrono::steady_clock::now();
        exec::cpu::linear(x.data(), 1, exec::cpu::Weight{w, d, n, k}, nullptr, y.data(), 2);
        const auto t1 = std::chrono::steady_clock::now();
        reader.read(ref_at(at), buf.data(), false, threads);
        const auto t2 = std::chrono::steady_clock::now();
        exec::cpu::linear(x.data(), 1, exec::cpu::Weight{buf.data(), d, n, k}, nullptr, y.data(), 2);
        const auto t3 = std::chrono::steady_clock::now();
        if (r == 0) continue;  // warm-up
        if (threads == 1) prod.push_back(secs(t0, t1));
        copy[threads - 1].push_back(secs(t1, t2));
        both[threads - 1].push_back(secs(t1, t3));
      }
    }
    rows[0].push_back({n, k, bytes, median(prod), median(copy[0]), median(both[0])});
    rows[1].push_back({n, k, bytes, median(prod), median(copy[1]), median(both[1])});
  }
  for (int t = 0; t < 2; ++t) {
    std::printf("%scopied by %d thread%s:\n", t ? "\n" : "", t + 1, t ? "s" : "");
    std::printf("%s", kCopyHeader);
    for (const Row& w : rows[t]) print_copy_row(w.n, w.k, w.bytes, w.p, w.c, w.b);
  }
  std::remove(path.c_str());
}

// Where the cache effect ends: for tensor sizes around the last-level cache, through the real
// path (DiskReader warm by 2 threads into one reused 2 MiB-page buffer, as the executor reads), the product on the
// just-copied buffer against the product on weights from a DRAM pool. Sizes interleaved, PASSES
// passes of 11 repetitions each; per pass the medians of the product after the copy over the
// product from DRAM (after/dram), the copy alone and what copy and product add to the step.
void cache_knee(DType d, int passes) {
  const size_t file_bytes = size_t{1} << 30;
  const std::string path = write_synced_file(file_bytes);
  const size_t es = d == DType::kFloat32 ? 4 : 2;
  const int64_t k = 1024;
  std::vector<int64_t> rows_mb = {2, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 64, 128};  // in MiB of weights
  const size_t pool_bytes = size_t{2} << 30;
  exec::WeightBuffer pool = exec::weight_buffer(pool_bytes);  // resident weights' pages
  std::memset(pool.get(), 1, pool_bytes);
  exec::DiskReader reader;
  {
    std::vector<uint8_t> tmp(size_t{64} << 20);
    for (size_t off = 0; off < file_bytes; off += tmp.size()) {
      exec::WeightRef r;
      r.name = "bench";
      r.file = path;
      r.offset = off;
      r.w = exec::cpu::Weight{nullptr, DType::kFloat32, static_cast<int64_t>(tmp.size() / 4 / 1024), 1024};
      r.on_disk = true;
      reader.read(r, tmp.data(), false, 2);  // page cache and map warm
    }
  }
  exec::WeightBuffer buf = exec::weight_buffer(size_t{128} << 20);  // as the executor's disk buffer
  std::memset(buf.get(), 0, size_t{128} << 20);
  std::vector<float> x(static_cast<size_t>(k), 0.5f), y(size_t{128} << 20);
  std::printf("pass   MiB  product_dram_ms  copy_ms  product_after_ms  after/dram  added GB/s  copy GB/s\n");
  size_t at = 0;
  for (int pass = 0; pass < passes; ++pass) {
    for (int64_t mb : rows_mb) {
      const size_t bytes = static_cast<size_t>(mb) << 20;
      const int64_t n = static_cast<int64_t>(bytes / es / static_cast<size_t>(k));
      std::vector<double> prod, copy, after;
      for (int r = 0; r < 12; ++r) {
        const uint8_t* w = pool.get() + (at % (pool_bytes / bytes)) * bytes;
        exec::WeightRef ref;
        ref.name = "bench";
        ref.file = path;
        ref.offset = (at % (file_bytes / bytes)) * bytes;
        ref.w = exec::cpu::Weight{nullptr, d, n, k};
        ref.on_disk = true;
        ++at;
        const auto t0 = std::chrono::steady_clock::now();
        exec::cpu::linear(x.data(), 1, exec::cpu::Weight{w, d, n, k}, nullptr, y.data(), 2);
        const auto t1 = std::chrono::steady_clock::now();
        reader.read(ref, buf.get(), false, 2);
        const auto t2 = std::chrono::steady_clock::now();
        exec::cpu::linear(x.data(), 1, exec::cpu::Weight{buf.get(), d, n, k}, nullptr, y.data(), 2);
        const auto t3 = std::chrono::steady_clock::now();
        if (r == 0) continue;  // warm-up
        prod.push_back(std::chrono::duration<double>(t1 - t0).count());
        copy.push_back(std::chrono::duration<double>(t2 - t1).count());
        after.push_back(std::chrono::duration<double>(t3 - t2).count());
      }
      const double p = median(prod), c = median(copy), a = median(after);
      std::printf("%4d %5lld %16.3f %8.3f %17.3f %11.2f %11.2f %10.2f\n", pass, static_cast<long long>(mb), p * 1e3,
                  c * 1e3, a * 1e3, a / p, static_cast<double>(bytes) / (c + a - p) / 1e9,
                  static_cast<double>(bytes) / c / 1e9);
      std::fflush(stdout);
    }
  }
  std::remove(path.c_str());
}

// The warm page-cache cost of small tensors against large ones in whole-model decode: CPU-only,
// every layer's attention on disk (q/k/v/o: below the cache knee on the models measured), and the
// last third of the layers whole on disk; REPS rounds interleaved, medians.
void split_runs(const std::string& model, DType d, int reps) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  profile::RunSettings rs;
  rs.threads = 2;
  rs.new_tokens = 12;
  const DeviceMap cpu = profile::layers_on_disk_map(spec, 0);
  const int64_t layers = exec::exec_config(spec).layers;
  const DeviceMap third = profile::layers_on_disk_map(spec, std::max<int64_t>(1, layers / 3));
  DeviceMap attn;
  for (const auto& [name, dev] : cpu.items()) {
    attn.assign(name, dev);  // the nearest mapped ancestor decides: the layer on the CPU, its attention on disk
    if (name.rfind("model.layers.", 0) == 0) attn.assign(name + ".self_attn", Device::disk());
  }
  std::vector<double> c, a, t;
  double abytes = 0, tbytes = 0;
  for (int r = 0; r < reps; ++r) {
    const profile::PlacementRun rc = profile::run_placement(spec, d, cpu, rs);
    const profile::PlacementRun ra = profile::run_placement(spec, d, attn, rs);
    const profile::PlacementRun rt = profile::run_placement(spec, d, third, rs);
    c.push_back(rc.decode_token_s);
    a.push_back(ra.decode_token_s);
    t.push_back(rt.decode_token_s);
    abytes = static_cast<double>(ra.disk_bytes_read) / static_cast<double>(ra.forwards);
    tbytes = static_cast<double>(rt.disk_bytes_read) / static_cast<double>(rt.forwards);
    std::printf(
        "round %d: cpu %.2f ms, attention on disk %.2f ms (%.0f MB), third on disk %.2f ms (%.0f MB); copy %.1f / %.1f "
        "ms\n",
        r, rc.decode_token_s * 1e3, ra.decode_token_s * 1e3, abytes / 1e6, rt.decode_token_s * 1e3, tbytes / 1e6,
        ra.decode_disk_read_s * 1e3, rt.decode_disk_read_s * 1e3);
    std::fflush(stdout);
  }
  const double mc = median(c), ma = median(a), mt = median(t);
  std::printf("medians: cpu %.2f, attention %.2f (adds %.2f GB/s), third %.2f (adds %.2f GB/s)\n", mc * 1e3, ma * 1e3,
              abytes / (ma - mc) / 1e9, mt * 1e3, tbytes / (mt - mc) / 1e9);
}

// What each tensor of a disk layer adds to a decode step: the last DISK layers on disk, step
// timing on (profile::RunSettings::time_steps), per tensor kind the median over the disk layers of
// its steps' time (read + product) less the median over the resident layers (product alone);
// REPS runs, the median of their figures. Prints the tensor's MiB, the extra and its GB/s.
void disk_steps(const std::string& model, DType d, int64_t disk, int reps) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  profile::RunSettings rs;
  rs.threads = 2;
  rs.new_tokens = 12;
  rs.time_steps = true;
  const DeviceMap dm = profile::layers_on_disk_map(spec, disk);
  const int64_t L = cfg.layers, first = L - disk;
  std::map<std::string, std::vector<double>> extra;
  std::map<std::string, double> bytes;
  std::vector<std::string> order;
  for (int r = 0; r < reps; ++r) {
    const profile::PlacementRun run = profile::run_placement(spec, d, dm, rs);
    std::map<std::string, std::vector<double>> on, off;
    for (const auto& [name, s] : run.decode_weight_s) {
      const std::string prefix = "model.layers.";
      if (name.rfind(prefix, 0) != 0) continue;
      const size_t dot = name.find('.', prefix.size());
      const int64_t l = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
      const std::string kind = name.substr(dot + 1);
      (l >= first ? on : off)[kind].push_back(s);
    }
    for (const auto& [kind, v] : on) {
      if (!off.count(kind)) continue;
      if (!extra.count(kind)) order.push_back(kind);
      extra[kind].push_back(median(v) - median(off[kind]));
    }
    std::printf("run %d: decode %.2f ms/token, reads %.2f ms\n", r, run.decode_token_s * 1e3,
                run.decode_disk_read_s * 1e3);
  }
  for (const auto& [name, shape] : exec::ModelWeights::expected(cfg)) {
    double numel = 1;
    for (int64_t n : shape) numel *= static_cast<double>(n);
    const std::string prefix = "model.layers.0.";
    if (name.rfind(prefix, 0) == 0) bytes[name.substr(prefix.size())] = numel * static_cast<double>(exec::elt_size(d));
  }
  std::printf("%-40s %8s %9s %8s\n", "tensor", "MiB", "extra ms", "GB/s");
  double total = 0;
  for (const std::string& k : order) {
    const double e = median(extra[k]);
    total += e;
    std::printf("%-40s %8.2f %9.4f %8.2f\n", k.c_str(), bytes[k] / 1048576.0, e * 1e3, bytes[k] / e / 1e9);
  }
  std::printf("per disk layer: %.3f ms\n", total * 1e3);
}

// Cold reads as the executor does them (exec::DiskReader with drop_page_cache: the tensor's pages
// unmapped and evicted, then copied back out of the file's map by one thread), by tensor size, into
// a 2 MiB-page buffer: REPS reads of each size at successive offsets of one 1 GiB file, sizes
// interleaved; the median GB/s per size.
void cold_reads(int reps) {
  const size_t file_bytes = size_t{1} << 30;
  const std::string path = write_synced_file(file_bytes);
  const std::vector<size_t> mib = {16, 32, 64, 128, 256, 512};
  exec::WeightBuffer buf = exec::weight_buffer(size_t{512} << 20);
  std::memset(buf.get(), 0, size_t{512} << 20);
  exec::DiskReader reader;
  std::map<size_t, std::vector<double>> gbs;
  size_t at = 0;
  for (int r = 0; r < reps; ++r) {
    for (size_t m : mib) {
      const size_t bytes = m << 20;
      exec::WeightRef ref;
      ref.name = "bench";
      ref.file = path;
      ref.offset = (at++ % (file_bytes / bytes)) * bytes;
      ref.w = exec::cpu::Weight{nullptr, DType::kFloat32, 1, static_cast<int64_t>(bytes / 4)};
      ref.on_disk = true;
      const auto t0 = std::chrono::steady_clock::now();
      reader.read(ref, buf.get(), true, 2);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      gbs[m].push_back(static_cast<double>(bytes) / s / 1e9);
    }
  }
  std::printf("cold read (evicted, copied out of the map by one thread), GB/s: size MiB, median [min .. max]\n");
  for (size_t m : mib) {
    std::vector<double>& v = gbs[m];
    std::printf("%5zu  %6.2f  [%.2f .. %.2f]\n", m, median(v), *std::min_element(v.begin(), v.end()),
                *std::max_element(v.begin(), v.end()));
  }
  std::remove(path.c_str());
}

// The benches' fixed prompt: `prompt` ids spread over the vocabulary.
std::vector<int32_t> fixed_prompt(int64_t prompt, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(prompt));
  for (int64_t i = 0; i < prompt; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return ids;
}

// One prefill of `ids` from position 0, its wall seconds.
double timed_prefill(exec::CpuModel& m, const std::vector<int32_t>& ids, std::vector<float>& logits) {
  m.begin_phase(true);
  const auto t0 = std::chrono::steady_clock::now();
  m.forward(ids.data(), static_cast<int64_t>(ids.size()), 0, logits.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Where a CPU-only decode step's time goes: seeded random weights, a 64-token prefill, then
// `tokens` decode steps with step timing on; per kind of step (a product by its tensor's name
// within the layer), its milliseconds per token summed over the layers, its share of the step and,
// for products, the rate at which it streamed its weights. "outside the layers" is the embedding,
// the final norm and the head.
//
// With `prefill`: the same for the 64-token prefill, `tokens` warm prefills timed after an
// untimed one (every "ms/token" column is then ms per prefill), priced as a prefill.
void step_breakdown(const std::string& model, DType d, int tokens, int threads, const std::string& calibration,
                    bool prefill) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, d, 0);
  const int64_t prompt = 64;
  exec::RunOptions opt;
  opt.max_seq = prompt + tokens + 1;
  opt.threads = threads;
  exec::CpuModel m(cfg, w, opt);
  const std::vector<int32_t> ids = fixed_prompt(prompt, cfg.vocab);
  std::vector<float> logits(static_cast<size_t>(cfg.vocab));
  m.set_time_steps(prefill);
  auto minor_faults = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<long>(u.ru_minflt);
  };
  const long faults0 = minor_faults();
  const double first = timed_prefill(m, ids, logits);
  const long first_faults = minor_faults() - faults0;
  std::map<int, double> first_by_op;  // the first prefill's steps by kind (Step::Op)
  std::vector<double> first_moe;      // per layer
  for (const exec::CpuModel::StepTime& st : m.step_times()) {
    first_by_op[static_cast<int>(st.step->op)] += st.seconds;
    if (st.step->op == exec::Step::Op::kMoe) first_moe.push_back(st.seconds);
  }
  m.set_time_steps(true);
  double total = 0;
  for (int t = 0; prefill && t < tokens; ++t) total += timed_prefill(m, ids, logits);
  for (int t = 0; !prefill && t < tokens; ++t) {
    m.begin_phase(false);
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(&next, 1, prompt + t, logits.data());
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  struct Sum {
    double s = 0, bytes = 0;
  };
  std::vector<std::pair<std::string, Sum>> sums;  // in program order
  auto at = [&](const std::string& key) -> Sum& {
    for (auto& [k, v] : sums)
      if (k == key) return v;
    sums.push_back({key, {}});
    return sums.back().second;
  };
  const char* const kinds[] = {"module",    "norm",      "linear",   "rope",
                               "attention", "gated act", "residual", "moe"};  // Step::Op order
  double in_layers = 0;
  for (const exec::CpuModel::StepTime& st : m.step_times()) {
    const exec::Step& s = *st.step;
    if (s.op == exec::Step::Op::kModule) continue;
    std::string key = kinds[static_cast<int>(s.op)];
    if (!s.weight.empty()) {
      const std::string prefix = "model.layers." + std::to_string(st.layer) + ".";
      key += " " + (s.weight.rfind(prefix, 0) == 0 ? s.weight.substr(prefix.size()) : s.weight);
      if (s.row0 > 0 || s.op == exec::Step::Op::kLinear)
        key += " [" + std::to_string(s.row0) + "+" + std::to_string(s.n) + "]";
    }
    Sum& v = at(key);
    v.s += st.seconds / tokens;
    in_layers += st.seconds / tokens;
    if (s.op == exec::Step::Op::kLinear)
      v.bytes += static_cast<double>(s.n * s.k) * static_cast<double>(exec::elt_size(d));
  }
  const double step = total / tokens;
  std::printf("%s %s, %d threads: %s %.2f ms over %d %s (context %lld..)\n", model.c_str(),
              std::string(dtype_name(d)).c_str(), threads, prefill ? "prefill" : "decode", step * 1e3, tokens,
              prefill ? "prefills" : "steps", static_cast<long long>(prefill ? 0 : prompt));
  if (prefill) {
    std::printf(
        "the first prefill: %.2f ms, %ld minor page faults (the warm ones: %ld); by kind of step, first / "
        "the warm ones' mean:",
        first * 1e3, first_faults, (minor_faults() - faults0 - first_faults) / std::max(1, tokens));
    std::map<int, double> warm_by_op;
    for (const exec::CpuModel::StepTime& st : m.step_times()) warm_by_op[static_cast<int>(st.step->op)] += st.seconds;
    const char* const op_names[] = {"module", "norm", "linear", "rope", "attention", "gated act", "residual", "moe"};
    for (const auto& [op, t] : first_by_op)
      if (op > 0) std::printf(" %s %.1f/%.1f", op_names[op], t * 1e3, warm_by_op[op] / tokens * 1e3);
    std::printf("\n");
    if (!first_moe.empty()) {
      std::printf("moe by layer, first / warm mean, ms:");
      size_t i = 0;
      for (const exec::CpuModel::StepTime& st : m.step_times())
        if (st.step->op == exec::Step::Op::kMoe && i < first_moe.size())
          std::printf(" %.1f/%.1f", first_moe[i++] * 1e3, st.seconds / tokens * 1e3);
      std::printf("\n");
    }
  }
  std::printf("%-52s %9s %6s %8s\n", "step (summed over the layers)", "ms/token", "share", "GB/s");
  for (const auto& [k, v] : sums) {
    std::printf("%-52s %9.3f %5.1f%%", k.c_str(), v.s * 1e3, 100 * v.s / step);
    if (v.bytes > 0) std::printf(" %8.2f", v.bytes / v.s / 1e9);
    std::printf("\n");
  }
  const double head_bytes = static_cast<double>(cfg.vocab * cfg.hidden) * static_cast<double>(exec::elt_size(d));
  std::printf("%-52s %9.3f %5.1f%% (head %.0f MB)\n", "outside the layers (embedding, final norm, head)",
              (step - in_layers) * 1e3, 100 * (step - in_layers) / step, head_bytes / 1e6);
  if (calibration.empty()) return;
  // The cost model's price of each op of the same decode step (CPU, context at the middle of
  // the measured steps), summed over the layers by module name.
  sim::Calibration cal = sim::load_calibration(calibration);
  const exec::ExpertCounts ec = m.expert_counts();
  if (cfg.experts > 0 && prefill && ec.prefill_forwards > 0) {
    // Priced at the experts this run touched (uniform over them), not the calibration's spread.
    const double touched = static_cast<double>(ec.prefill_touched) / static_cast<double>(ec.prefill_forwards);
    cal.moe_routing_spread = 1.0;
    cal.moe_sequence_spread =
        sim::sequence_spread_of(cfg.experts, cfg.top_k, static_cast<double>(prompt), touched, 1.0).value_or(1.0);
    std::printf("\nexperts touched per prefill forward: %.1f of %lld (sequence spread %.3f)\n", touched,
                static_cast<long long>(cfg.experts), *cal.moe_sequence_spread);
  }
  YAML::Node hn;
  hn["host"] = load_yaml_string(profile::detected_host_yaml(), "the detected host");
  hn["disk"] = "nvme_gen3";
  const sim::Hardware hw =
      sim::parse_hardware(hn, "the detected host", std::string(DMAP_SOURCE_DIR) + "/configs/hardware");
  const ModuleTree tree = build_module_tree(spec);
  const sim::ModelGraph graph = sim::build_graph(tree, d);
  sim::Workload wl;
  wl.prompt = prompt;
  wl.new_tokens = tokens + 1;
  wl.dtype = d;
  const sim::Rates rates = sim::make_rates(hw, &cal);  // CostModel keeps a reference
  const sim::CostModel cm(graph, rates, wl);
  const sim::Phase phase = prefill ? sim::Phase::prefill_of(prompt) : sim::Phase::decode_at(prompt + tokens / 2);
  struct Priced {
    double s = 0, bytes = 0, overhead = 0;
  };
  std::vector<std::pair<std::string, Priced>> pred;
  double pred_total = 0;
  for (const sim::Op& op : graph.ops) {
    std::string name = tree.node(op.node).name;
    const size_t at_layers = name.find("layers.");
    if (at_layers != std::string::npos) {
      const size_t dot = name.find('.', at_layers + 7);
      name = dot == std::string::npos ? "layers.N" : name.substr(dot + 1);
    }
    name += " (" + sim::op_kind_name(op.kind) + ")";
    const sim::OpTime t = cm.op(op, sim::ExecDevice::cpu(), phase);
    pred_total += t.time();
    auto it = std::find_if(pred.begin(), pred.end(), [&](const auto& p) { return p.first == name; });
    if (it == pred.end()) {
      pred.push_back({name, {}});
      it = pred.end() - 1;
    }
    it->second.s += t.time();
    it->second.bytes += t.bytes;
    it->second.overhead += t.overhead_s;
  }
  std::printf("\npredicted (%s), ops summed over the layers: %.2f ms/token (measured / predicted %.3f)\n",
              calibration.c_str(), pred_total * 1e3, step / pred_total);
  std::printf("%-52s %9s %6s %8s %9s\n", "op", "ms/token", "share", "GB/s", "overhead");
  for (const auto& [k, t] : pred) {
    std::printf("%-52s %9.3f %5.1f%% %8.2f %8.3f\n", k.c_str(), t.s * 1e3, 100 * t.s / pred_total, t.bytes / t.s / 1e9,
                t.overhead * 1e3);
  }
}

// The parts of a MoE block's prefill, timed apart: for `prompt` tokens of seeded random
// activations through each layer's router and experts (random weights, as the executor's
// runs), the router's product, routing, grouping, the [gate|up] products, the down products and
// the combination — per part its milliseconds summed over the layers (median over `reps`), and
// for the expert products the rate at which they streamed the touched experts' weights.
void moe_parts(const std::string& model, DType d, int64_t prompt, int reps, int threads, int64_t reach) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  if (cfg.experts == 0) throw std::runtime_error(model + " has no routed experts");
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, d, 0);
  const int64_t E = cfg.experts, K = cfg.top_k, H = cfg.hidden, I = cfg.moe_inter, M = prompt;
  std::vector<float> x(static_cast<size_t>(M * H)), logits(static_cast<size_t>(M * E)), out(x.size()), wt(M * K);
  std::vector<int32_t> pick(static_cast<size_t>(M * K));
  uint64_t state = 88172645463325252ull;
  for (float& v : x) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    v = exec::cpu::round_to(d, static_cast<float>(static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5));
  }
  exec::cpu::MoeScratch s;
  const char* const names[] = {"router product",           "routing",       "grouping",
                               "[gate|up] products + act", "down products", "combination"};
  std::vector<std::vector<double>> ms(6);
  double touched = 0;
  for (int r = 0; r < reps + 1; ++r) {
    double part[6] = {};
    int64_t t_all = 0;
    for (int64_t l = 0; l < cfg.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
      auto lap = [&](int i, auto&& fn) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        part[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
      lap(0, [&] { exec::cpu::linear(x.data(), M, w.get(p + "gate.weight").w, nullptr, logits.data(), threads); });
      // Routing reaches only the first `reach` experts (the executor's own runs touch fewer
      // than uniform routing would: skewed routers).
      for (int64_t m = 0; m < M; ++m)
        for (int64_t e = reach; e < E; ++e) logits[static_cast<size_t>(m * E + e)] = -1e30f;
      lap(1, [&] {
        exec::cpu::moe_route(logits.data(), M, E, K, cfg.norm_topk, cfg.router_fp32_weights, d, pick.data(), wt.data());
      });
      lap(2, [&] { t_all += exec::cpu::moe_dispatch(x.data(), M, H, E, K, pick.data(), s); });
      lap(3, [&] { exec::cpu::moe_gate_up(w.get(p + "experts.gate_up_proj").w, E, I, d, threads, s); });
      lap(4, [&] { exec::cpu::moe_down(w.get(p + "experts.down_proj").w, E, H, d, threads, s); });
      lap(5, [&] { exec::cpu::moe_combine(wt.data(), M, H, K, cfg.router_fp32_weights, d, s, out.data(), threads); });
    }
    if (r == 0) continue;  // warm-up
    for (int i = 0; i < 6; ++i) ms[static_cast<size_t>(i)].push_back(part[i] * 1e3);
    touched = static_cast<double>(t_all) / static_cast<double>(cfg.layers);
  }
  const double elt = static_cast<double>(exec::elt_size(d));
  const double gu_bytes = touched * static_cast<double>(2 * I * H) * elt * static_cast<double>(cfg.layers);
  const double dn_bytes = touched * static_cast<double>(H * I) * elt * static_cast<double>(cfg.layers);
  std::printf("%s %s, %d threads, %lld tokens: %.1f of %lld experts touched per layer (%.1f rows each)\n",
              model.c_str(), std::string(dtype_name(d)).c_str(), threads, static_cast<long long>(M), touched,
              static_cast<long long>(E), static_cast<double>(M * K) / touched);
  double total = 0;
  for (int i = 0; i < 6; ++i) {
    const double t = median(ms[static_cast<size_t>(i)]);
    total += t;
    std::printf("%-30s %9.3f ms (spread %.0f %%)", names[i], t, 100 * spread(ms[static_cast<size_t>(i)]));
    if (i == 3)
      std::printf("  %.1f GB/s, %.0f GFLOP/s", gu_bytes / t / 1e6, 2.0 * M * K * 2 * I * H / t / 1e6 * cfg.layers);
    if (i == 4)
      std::printf("  %.1f GB/s, %.0f GFLOP/s", dn_bytes / t / 1e6, 2.0 * M * K * I * H / t / 1e6 * cfg.layers);
    std::printf("\n");
  }
  std::printf("%-30s %9.3f ms, over %lld layers\n", "sum", total, static_cast<long long>(cfg.layers));
}

// One product of M rows by each of `count` N x K matrices in turn (contiguous, as a MoE layer's
// stacked experts; seeded random), for M = 1..16 and on to 64: per M the median over `reps` passes of the
// rate at which the matrices streamed and the GFLOP/s.
void row_sweep(DType d, int64_t N, int64_t K, int64_t count, int reps) {
  const size_t elt = exec::elt_size(d);
  std::vector<uint8_t> store(static_cast<size_t>(count * N * K) * elt);
  for (size_t i = 0; i < store.size(); ++i) store[i] = static_cast<uint8_t>((i * 2654435761u) >> 13) & 0x3f;
  std::vector<float> x(static_cast<size_t>(64 * K), 0.01f), y(static_cast<size_t>(64 * N));
  std::printf("%s %lld x %lld, %lld matrices (%.0f MB), 2 threads\n", std::string(dtype_name(d)).c_str(),
              static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(count),
              static_cast<double>(store.size()) / 1e6);
  std::printf("%4s %10s %8s %9s\n", "M", "ms/matrix", "GB/s", "GFLOP/s");
  for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 20, 24, 32, 40, 48, 64}) {
    std::vector<double> t;
    for (int r = 0; r < reps + 1; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t e = 0; e < count; ++e) {
        const exec::cpu::Weight w{store.data() + static_cast<size_t>(e * N * K) * elt, d, N, K};
        exec::cpu::linear(x.data(), M, w, nullptr, y.data(), 2);
      }
      if (r > 0) t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / count);
    }
    const double s = median(t);
    std::printf("%4lld %10.4f %8.1f %9.1f\n", static_cast<long long>(M), s * 1e3,
                static_cast<double>(N * K) * elt / s / 1e9, 2.0 * M * N * K / s / 1e9);
  }
}

// Does a compute probe follow the prefill? Per round: a product probe (TinyLlama's q_proj shape,
// 2048 x 2048 at M = 64 in `d`, weights cycling through a DRAM pool: compute-bound), the reference
// probe (a float32 matrix-vector stream: memory), then warm prefills of `model` (the median of 3
// on one executor). Prints each round and the correlation of prefill with each probe.
void prefill_drift(const std::string& model, DType d, int rounds) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, d, 0);
  const int64_t prompt = 64;
  exec::RunOptions opt;
  opt.max_seq = prompt + 1;
  opt.threads = 2;
  exec::CpuModel m(cfg, w, opt);
  const std::vector<int32_t> ids = fixed_prompt(prompt, cfg.vocab);
  std::vector<float> logits(static_cast<size_t>(cfg.vocab));
  timed_prefill(m, ids, logits);  // warm-up
  profile::WeightStore store;
  profile::WeightPool pool(store, d, 2048, 2048, profile::dram_pool_bytes(512u << 20));
  std::vector<double> comp, mem, pre;
  std::printf("%5s %12s %12s %12s\n", "round", "product ms", "probe ms", "prefill ms");
  for (int r = 0; r < rounds; ++r) {
    const double c = profile::time_linear(pool, 64, 2, 5) * 1e3;
    const double p = profile::reference_probe_ms(2);
    std::vector<double> t;
    for (int i = 0; i < 3; ++i) t.push_back(timed_prefill(m, ids, logits) * 1e3);
    comp.push_back(c);
    mem.push_back(p);
    pre.push_back(median(t));
    std::printf("%5d %12.3f %12.3f %12.1f\n", r, c, p, pre.back());
  }
  std::printf("prefill spread %.3f; correlation with the product probe %.2f, with the reference probe %.2f\n",
              spread(pre), pearson(pre, comp), pearson(pre, mem));
}

// Whether the machine's speed is a state of the time or of the memory the weights landed in:
// `allocs` times, seeded random weights allocated afresh; each allocation decodes `rounds` times
// (a 64-token prefill once, then 12 tokens per round), the reference probe before each round.
// Prints one line per round and, per allocation, the decode median; then the spread of decode
// within allocations (median of their max/min) against the spread of the allocations' medians.
void alloc_states(const std::string& model, DType d, int allocs, int rounds) {
  const ModelSpec spec = resolve_model(model, "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const int64_t prompt = 64, tokens = 12;
  std::vector<double> medians, within;
  std::printf("%5s %5s %10s %10s %12s\n", "alloc", "round", "probe ms", "weights GB/s", "decode ms");
  for (int a = 0; a < allocs; ++a) {
    const exec::ModelWeights w = exec::ModelWeights::random(cfg, d, static_cast<uint64_t>(a));
    exec::RunOptions opt;
    opt.max_seq = prompt + tokens * rounds + 1;
    opt.threads = 2;
    exec::CpuModel m(cfg, w, opt);
    const std::vector<int32_t> ids = fixed_prompt(prompt, cfg.vocab);
    std::vector<float> logits(static_cast<size_t>(cfg.vocab));
    timed_prefill(m, ids, logits);
    std::vector<double> dec;
    int64_t pos = prompt;
    for (int r = 0; r < rounds; ++r) {
      const double p = profile::reference_probe_ms(2);
      const double gbs = profile::read_weights(w, 2).gbs();
      m.begin_phase(false);
      const auto t0 = std::chrono::steady_clock::now();
      for (int t = 0; t < tokens; ++t, ++pos) {
        const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        m.forward(&next, 1, pos, logits.data());
      }
      dec.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3 / tokens);
      std::printf("%5d %5d %10.3f %10.2f %12.2f\n", a, r, p, gbs, dec.back());
      std::fflush(stdout);
    }
    medians.push_back(median(dec));
    within.push_back(spread(dec));
    std::printf("alloc %d: decode median %.2f ms, spread %.3f\n", a, medians.back(), within.back());
  }
  std::printf("spread within allocations (median) %.3f; spread of allocation medians %.3f\n", median(within),
              spread(medians));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "cold") {  // drift_bench cold REPS: cold reads by size
    cold_reads(std::atoi(argv[2]));
    return 0;
  }
  if (argc == 6 && std::string(argv[1]) == "disksteps") {  // drift_bench disksteps MODEL DTYPE DISK_LAYERS REPS
    disk_steps(argv[2], parse_dtype(argv[3]).value(), std::atoll(argv[4]), std::atoi(argv[5]));
    return 0;
  }
  if (argc >= 5 && argc <= 7 &&
      (std::string(argv[1]) == "steps" ||
       std::string(argv[1]) == "prefillsteps")) {  // drift_bench [prefill]steps MODEL DTYPE TOKENS [THREADS [CAL]]
    step_breakdown(argv[2], parse_dtype(argv[3]).value(), std::atoi(argv[4]), argc >= 6 ? std::atoi(argv[5]) : 2,
                   argc == 7 ? argv[6] : "", std::string(argv[1]) == "prefillsteps");
    return 0;
  }
  if (argc >= 6 && argc <= 7 &&
      std::string(argv[1]) == "moeparts") {  // drift_bench moeparts MODEL DTYPE TOKENS REPS [REACH]
    moe_parts(argv[2], parse_dtype(argv[3]).value(), std::atoll(argv[4]), std::atoi(argv[5]), 2,
              argc == 7 ? std::atoll(argv[6]) : int64_t{1} << 30);
    return 0;
  }
  if (argc == 6 && std::string(argv[1]) == "allocs") {  // drift_bench allocs MODEL DTYPE ALLOCS ROUNDS
    alloc_states(argv[2], parse_dtype(argv[3]).value(), std::atoi(argv[4]), std::atoi(argv[5]));
    return 0;
  }
  if (argc == 5 && std::string(argv[1]) == "prefilldrift") {  // drift_bench prefilldrift MODEL DTYPE ROUNDS
    prefill_drift(argv[2], parse_dtype(argv[3]).value(), std::atoi(argv[4]));
    return 0;
  }
  if (argc == 7 && std::string(argv[1]) == "rowsweep") {  // drift_bench rowsweep DTYPE N K COUNT REPS
    row_sweep(parse_dtype(argv[2]).value(), std::atoll(argv[3]), std::atoll(argv[4]), std::atoll(argv[5]),
              std::atoi(argv[6]));
    return 0;
  }
  if (argc == 4 && std::string(argv[1]) == "probe") {  // drift_bench probe READS CALLS: jitter alone
    const int reads = std::atoi(argv[2]), calls = std::atoi(argv[3]);
    std::vector<double> v;
    for (int i = 0; i < calls; ++i) v.push_back(profile::reference_probe_ms(2, reads));
    for (double x : v) std::printf("%.3f ", x);
    std::printf("\nprobe of %d reads, %d calls back to back: spread %.3f\n", reads, calls, spread(v));
    return 0;
  }
  if (argc == 3 && std::string(argv[1]) == "pagecache") {  // drift_bench pagecache DTYPE: the real path
    page_cache_then_product(parse_dtype(argv[2]).value());
    return 0;
  }
  if (argc == 4 && std::string(argv[1]) == "knee") {  // drift_bench knee DTYPE PASSES: the cache effect by size
    cache_knee(parse_dtype(argv[2]).value(), std::atoi(argv[3]));
    return 0;
  }
  if (argc == 3 && std::string(argv[1]) == "copy") {  // drift_bench copy DTYPE: copy-then-product by size
    copy_then_product(parse_dtype(argv[2]).value());
    return 0;
  }
  if (argc == 5 && std::string(argv[1]) == "split") {  // drift_bench split MODEL DTYPE REPS: small vs large tensors
    split_runs(argv[2], parse_dtype(argv[3]).value(), std::atoi(argv[4]));
    return 0;
  }
  if (argc < 4) {
    std::fprintf(stderr, "usage: drift_bench MODEL DTYPE ROUNDS [THREADS]\n");
    return 2;
  }
  const ModelSpec spec = resolve_model(argv[1], "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const DType d = parse_dtype(argv[2]).value();
  const int rounds = std::atoi(argv[3]);
  profile::RunSettings rs;
  rs.threads = argc > 4 ? std::atoi(argv[4]) : 2;
  rs.new_tokens = 12;
  rs.read_weights = true;
  const DeviceMap cpu = profile::layers_on_disk_map(spec, 0);
  // argv[5] == "pages": rounds alternate weights on huge pages and on 4 KiB pages (DMAP_WEIGHT_PAGES)
  const bool alternate = argc > 5 && std::string(argv[5]) == "pages";
  std::vector<double> dec, ratio_dec, probe, weights_s, weights_dec, tight, tight_dtype;
  std::vector<double> by_pages[2];
  std::printf(
      "round probe_before_ms probe_after_ms probe_before_decode_ms probe_after_decode_ms "
      "dtype_probe_before_decode_ms dtype_probe_after_decode_ms weights_read_gbs decode_ms%s\n",
      alternate ? " pages" : "");
  for (int r = 0; r < rounds; ++r) {
    if (alternate) ::setenv("DMAP_WEIGHT_PAGES", r % 2 ? "small" : "huge", 1);
    // The decode's own bracket (RunSettings::before_decode / after_decode): the float32 probe and
    // the probe in the run's dtype (the same when it is float32).
    double q0 = 0, q1 = 0, d0 = 0, d1 = 0;
    rs.before_decode = [&] {
      q0 = profile::reference_probe_ms(rs.threads);
      d0 = d == DType::kFloat32 ? q0 : profile::reference_probe_ms(rs.threads, profile::kReferenceProbeReads, d);
    };
    rs.after_decode = [&] {
      d1 = d == DType::kFloat32 ? 0 : profile::reference_probe_ms(rs.threads, profile::kReferenceProbeReads, d);
      q1 = profile::reference_probe_ms(rs.threads);
      if (d == DType::kFloat32) d1 = q1;
    };
    const double p0 = profile::reference_probe_ms(rs.threads);
    const profile::PlacementRun run = profile::run_placement(spec, d, cpu, rs);
    const double p1 = profile::reference_probe_ms(rs.threads);
    std::printf("%d %.3f %.3f %.3f %.3f %.3f %.3f %.2f %.2f%s\n", r, p0, p1, q0, q1, d0, d1, run.weights_gbs,
                run.decode_token_s * 1e3, alternate ? (r % 2 ? " small" : " huge") : "");
    tight.push_back((q0 + q1) / 2);
    tight_dtype.push_back((d0 + d1) / 2);
    if (alternate) by_pages[r % 2].push_back(run.decode_token_s * 1e3);
    std::fflush(stdout);
    dec.push_back(run.decode_token_s * 1e3);
    probe.push_back((p0 + p1) / 2);
    ratio_dec.push_back(run.decode_token_s * 1e3 / ((p0 + p1) / 2));
    weights_s.push_back(1 / run.weights_gbs);  // a read of the run's own weights, as time
    weights_dec.push_back(run.decode_token_s * 1e3 * run.weights_gbs);
  }
  std::printf("decode spread (max/min) %.3f; decode/probe spread %.3f; probe spread %.3f; r(decode, probe) %.2f\n",
              spread(dec), spread(ratio_dec), spread(probe), pearson(dec, probe));
  std::vector<double> ratio_tight;
  for (size_t i = 0; i < dec.size(); ++i) ratio_tight.push_back(dec[i] / tight[i]);
  std::printf("around the decode alone: decode/probe spread %.3f; r(decode, probe) %.2f\n", spread(ratio_tight),
              pearson(dec, tight));
  ratio_tight.clear();
  for (size_t i = 0; i < dec.size(); ++i) ratio_tight.push_back(dec[i] / tight_dtype[i]);
  std::printf("the probe in the run's dtype, around the decode: decode/probe spread %.3f; r(decode, probe) %.2f\n",
              spread(ratio_tight), pearson(dec, tight_dtype));
  std::printf("decode x weights-read rate spread %.3f; r(decode, weights-read time) %.2f\n", spread(weights_dec),
              pearson(dec, weights_s));
  for (int k = 0; alternate && k < 2; ++k) {
    std::vector<double>& v = by_pages[k];
    double m = 0, ss = 0;
    for (double x : v) m += std::log(x) / v.size();
    for (double x : v) ss += (std::log(x) - m) * (std::log(x) - m) / std::max<size_t>(v.size() - 1, 1);
    std::printf("%s pages: %zu rounds, decode median %.2f ms, spread (max/min) %.3f, sd of log %.1f %%\n",
                k ? "4 KiB" : "huge", v.size(), median(v), spread(v), 100 * std::sqrt(ss));
  }
  return 0;
}
