// The calibration fit recovers known parameters from synthetic measurements (with noise and
// outliers), the Chrome trace export is valid JSON with the events given, and a quick real
// calibration of a tiny model yields a loadable file with sane figures.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>
#include <thread>
#include <unistd.h>
#include <csignal>
#include <sys/wait.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>

#include "core/json_parse.h"
#include "core/error.h"
#include "profile/fit.h"
#include "profile/probes.h"
#include "core/scenario.h"
#include "exec/map_placement.h"
#include "profile/profile.h"
#include "profile/quiet.h"
#include "profile/reference_bracket.h"
#include "profile/runtime_probe.h"
#include "profile/llama_fit.h"
#include "report/validation_report.h"
#include "profile/runtime_validate.h"
#include "profile/subprocess.h"
#include "trace/trace.h"
#include "exec/config.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

using namespace dmap;
using namespace dmap::profile;

TEST_CASE("robust line fit recovers bandwidth and latency within 2 % despite outliers", "[unit][profile]") {
  std::mt19937 rng(5);
  std::normal_distribution<double> noise(0.0, 0.01);  // 1 % timing noise
  const double bw = 27.5e9, lat = 40e-6;
  std::vector<double> x, y;
  for (int i = 0; i < 40; ++i) {
    const double bytes = std::pow(2.0, 16 + (i % 12)) * (1 + i / 12);
    double t = lat + bytes / bw;
    t *= 1 + noise(rng);
    if (i % 10 == 3) t *= 3.0;  // a preempted run
    x.push_back(bytes);
    y.push_back(t);
  }
  const LineFit f = fit_line(x, y);
  CHECK(std::fabs(1.0 / f.slope / bw - 1) < 0.02);
  CHECK(std::fabs(f.intercept / lat - 1) < 0.02);
  CHECK(f.fit.downweighted >= 4);  // the four spoiled samples
}

TEST_CASE("robust fit recovers a multi-parameter model exactly without noise", "[unit][profile]") {
  // t = dispatch * kernels + bytes / bw + flops / rate
  const double dispatch = 4e-6, inv_bw = 1 / 30e9, inv_rate = 1 / 300e9;
  Eigen::MatrixXd A(12, 3);
  Eigen::VectorXd y(12);
  for (int i = 0; i < 12; ++i) {
    A(i, 0) = 10 + 7 * i;
    A(i, 1) = 1e6 * (1 + (i * 37) % 11);
    A(i, 2) = 1e8 * (1 + (i * 13) % 5);
    y(i) = dispatch * A(i, 0) + inv_bw * A(i, 1) + inv_rate * A(i, 2);
  }
  const RobustFit f = robust_fit(A, y);
  CHECK(std::fabs(f.coef(0) / dispatch - 1) < 1e-6);
  CHECK(std::fabs(f.coef(1) / inv_bw - 1) < 1e-6);
  CHECK(std::fabs(f.coef(2) / inv_rate - 1) < 1e-6);
  CHECK(f.max_abs_residual < 1e-9);
  CHECK(median({3, 1, 2}) == 2);
  CHECK(percentile({0, 10}, 0.9) == Approx(9));
}

TEST_CASE("the product fit recovers the FLOP rate and the per-input-element cost within 2 %", "[unit][profile]") {
  std::mt19937 rng(9);
  std::normal_distribution<double> noise(0.0, 0.01);
  const double rate = 310e9, input = 2.0e-9;
  std::vector<ProductSample> s;
  const int64_t shapes[][2] = {{128, 896},  {896, 896},   {4864, 896},  {896, 4864},  {256, 2048},
                               {512, 2048}, {2048, 2048}, {5632, 2048}, {2048, 5632}, {8192, 2048}};
  int i = 0;
  for (const auto& nk : shapes) {
    const double m = 64, n = static_cast<double>(nk[0]), k = static_cast<double>(nk[1]);
    double t = 2 * m * n * k / rate + m * k * input;
    t *= 1 + noise(rng);
    if (++i == 4) t *= 2.5;  // a preempted run
    s.push_back({m, n, k, t});
  }
  const ProductFit f = fit_products(s);
  CHECK(std::fabs(f.rate / rate - 1) < 0.02);
  CHECK(std::fabs(f.input_cost / input - 1) < 0.02);
  // Products with no per-element cost: the rate alone, and no negative cost.
  for (auto& x : s) x.seconds = 2 * x.m * x.n * x.k / rate;
  const ProductFit g = fit_products(s);
  CHECK(std::fabs(g.rate / rate - 1) < 1e-6);
  CHECK(g.input_cost == Approx(0).margin(1e-15));
}

TEST_CASE("Chrome trace export holds the events and names the tracks", "[unit][profile]") {
  Trace t;
  t.name_process(1, "measured \"run\"");
  t.name_thread(1, 1, "cpu");
  t.add({"model.layers.0.mlp", "decode", 1, 1, 1200.5, 85.25, {{"step", "3"}}});
  t.add({"lm_head", "prefill", 2, 1, 0, 10, {}});
  const JsonValue v = parse_json(t.json(), "trace");
  const JsonValue* ev = v.find("traceEvents");
  REQUIRE(ev != nullptr);
  REQUIRE(ev->items.size() == 4);  // process name, thread name, two events
  int complete = 0;
  for (const auto& e : ev->items) {
    if (e.find("ph")->s == "X") {
      ++complete;
      const JsonValue* dur = e.find("dur");
      CHECK((dur->is_int() ? static_cast<double>(dur->i) : dur->d) > 0);
    } else {
      CHECK(e.find("ph")->s == "M");
    }
  }
  CHECK(complete == 2);
  CHECK(ev->items[0].find("args")->find("name")->s == "measured \"run\"");
  CHECK(ev->items[2].find("ts")->d == Approx(1200.5));
  CHECK(ev->items[2].find("args")->find("step")->s == "3");
}

TEST_CASE("a quick real calibration of a tiny model gives sane figures", "[unit][profile][slow]") {
  ProfileOptions opt;
  opt.model = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json");
  opt.model_id = "llama_float32 fixture";
  opt.dtypes = {DType::kFloat32, DType::kBFloat16};
  opt.run.threads = 1;  // no OpenMP team: its barriers crawl when CI shares the cores
  opt.run.prompt = 16;
  opt.run.new_tokens = 4;
  opt.quick = true;
  opt.command = "profile_test";
  // CI runs two tests at once on two cores: the other one would spoil every try. The guard's
  // decisions are tested on synthetic loads below.
  opt.guard.enabled = false;
  const std::string hw_dir = std::string(DMAP_SOURCE_DIR) + "/configs/hardware";
  const sim::Hardware hw = sim::parse_hardware(YAML::Node("cloud_xeon_2vcpu_vm"), "test", hw_dir);
  const ProfileResult r = profile_cpu(opt, hw);
  const sim::Calibration cal = sim::parse_calibration(r.yaml, "quick");
  const sim::Rates rates = sim::make_rates(hw, &cal);
  // The self-check: every whole-model run (CPU-only and with layers on disk, per dtype) predicted.
  REQUIRE(r.self_check.size() == 2 * opt.dtypes.size());
  for (const auto& s : r.self_check) {
    CHECK(s.measured_decode_s > 0);
    CHECK(s.predicted_decode_s > 0);
    CHECK(s.worst_error() >= 0);
  }
  CHECK(r.self_check.back().placement.rfind("disk ", 0) == 0);
  // Disk runs are checked at their pairs' median resident ratio (a real machine state, 0.2-5x);
  // CPU-only runs as measured. Each pair's runs and ratio are in the fit block.
  for (const auto& s : r.self_check) {
    if (s.placement == "cpu") CHECK(s.state_ratio == 1.0);
    CHECK(s.state_ratio > 0.2);
    CHECK(s.state_ratio < 5);
  }
  for (DType d : opt.dtypes) {
    const YAML::Node pairs = cal.fit["disk_pairs_" + std::string(dtype_name(d))];
    REQUIRE(pairs.IsMap());
    const size_t n = pairs["pairs"].as<size_t>();
    CHECK(n >= 1);
    for (const char* key : {"decode_extra_ms", "resident_ratio", "cpu_decode_ms", "disk_decode_ms"}) {
      REQUIRE(pairs[key].IsSequence());
      CHECK(pairs[key].size() == n);
    }
    // Each extra is its disk run less its CPU-only run scaled by the ratio.
    for (size_t i = 0; i < n; ++i) {
      const double want = pairs["disk_decode_ms"][i].as<double>() -
                          pairs["resident_ratio"][i].as<double>() * pairs["cpu_decode_ms"][i].as<double>();
      CHECK(pairs["decode_extra_ms"][i].as<double>() == Approx(want).epsilon(0.01).margin(0.01));
    }
  }
  SelfCheckRow off{DType::kFloat32, "cpu", 1.0, 1.02, 0.1, 0.093};
  CHECK(off.worst_error() == Approx(0.07));
  // The reference probe is recorded (32 MiB read in 0.016-64 ms: 0.5-2000 GB/s) and read back.
  REQUIRE(cal.host.reference_probe_ms);
  CHECK(*cal.host.reference_probe_ms > 0.016);
  CHECK(*cal.host.reference_probe_ms < 64);
  // The same probe in bfloat16, around that dtype's runs, likewise; each CPU-only run's decode
  // referred to its dtype's probe median (fit block: measured x median / its probes' mean).
  REQUIRE(cal.host.dtype_reference_probe_ms.count(DType::kBFloat16));
  CHECK(cal.host.dtype_reference_probe_ms.at(DType::kBFloat16) > 0.016);
  CHECK(cal.host.dtype_reference_probe_ms.at(DType::kBFloat16) < 64);
  CHECK_FALSE(cal.host.dtype_reference_probe_ms.count(DType::kFloat32));
  for (const char* d : {"float32", "bfloat16"}) {
    const YAML::Node ref = cal.fit[std::string("decode_referral_") + d];
    REQUIRE(ref.IsMap());
    const double median_ms = ref["reference_probe_ms"].as<double>();
    CHECK(median_ms == Approx(std::string(d) == "float32" ? *cal.host.reference_probe_ms
                                                          : cal.host.dtype_reference_probe_ms.at(DType::kBFloat16))
                           .epsilon(0.001));
    REQUIRE(ref["probe_ms"].size() == ref["measured_decode_ms"].size());
    REQUIRE(ref["probe_ms"].size() == ref["referred_decode_ms"].size());
    for (size_t i = 0; i < ref["probe_ms"].size(); ++i) {
      const double want = ref["measured_decode_ms"][i].as<double>() * median_ms / ref["probe_ms"][i].as<double>();
      CHECK(ref["referred_decode_ms"][i].as<double>() == Approx(want).epsilon(0.005));
    }
  }
  // The page-cache probe around the disk runs: a copy rate (0.1-1000 GB/s), kept and written back.
  REQUIRE(cal.host.page_cache_probe_gbs);
  CHECK(*cal.host.page_cache_probe_gbs > 0.1);
  CHECK(*cal.host.page_cache_probe_gbs < 1000);
  CHECK(sim::parse_calibration(sim::calibration_yaml(cal), "back").host.page_cache_probe_gbs ==
        cal.host.page_cache_probe_gbs);
  // Large warm tensors (copied out of the file's map from exec::kMapCopyBytes on): measured by the
  // disk probe, a copy rate, from 64 MiB, and the cost model prices such a tensor at it.
  REQUIRE(cal.host.page_cache_large_gbs);
  CHECK(*cal.host.page_cache_large_gbs > 0.1);
  CHECK(*cal.host.page_cache_large_gbs < 1000);
  REQUIRE(cal.host.page_cache_large_from_mib);
  CHECK(*cal.host.page_cache_large_from_mib == Approx(64));
  CHECK(rates.page_cache_rate(DType::kBFloat16, 400.0 * 1024 * 1024) == Approx(*cal.host.page_cache_large_gbs * 1e9));
  CHECK(cal.fit["disk_probe"]["large_warm"]["mib"].as<int>() == 96);  // quick: kMapCopyBytes + 32 MiB
  // ... at the page-cache probe's level over the calibration: its ratio to the probe read before
  // each of its reads, times the probes' median.
  const double large_ratio = cal.fit["disk_probe"]["large_warm"]["page_cache_probe_ratio"].as<double>();
  CHECK(large_ratio > 0.01);
  CHECK(large_ratio < 100);
  REQUIRE(cal.host.page_cache_probe_gbs);
  CHECK(*cal.host.page_cache_large_gbs == Approx(large_ratio * *cal.host.page_cache_probe_gbs).epsilon(0.002));
  CHECK(cal.fit["disk_probe"]["large_warm"]["referred_gbs"].as<double>() ==
        Approx(*cal.host.page_cache_large_gbs).epsilon(0.002));
  // The same tensor cold: its own rate from the same size on, priced by the cost model.
  REQUIRE(cal.disk.read_large_gbs);
  CHECK(*cal.disk.read_large_gbs > 0.01);
  CHECK(*cal.disk.read_large_gbs < 1000);
  REQUIRE(cal.disk.read_large_from_mib);
  CHECK(*cal.disk.read_large_from_mib == 128);  // kColdStreamBytes
  CHECK(rates.disk_read_rate(DType::kBFloat16, 400.0 * 1024 * 1024) == Approx(*cal.disk.read_large_gbs * 1e9));
  CHECK(cal.fit["disk_probe"]["large_cold"]["gbs"].as<double>() > 0);
  // Sane ranges for any machine this runs on: 0.5-2000 GB/s memory, 5 MB/s-1000 GB/s disk (a CI
  // runner's throttled network disk read 45 MB/s on the quick calibration's small files).
  CHECK(rates.host.memory_bandwidth.source == sim::Source::kCalibrated);
  CHECK(rates.host.memory_bandwidth.value > 0.5e9);
  CHECK(rates.host.memory_bandwidth.value < 2000e9);
  CHECK(rates.disk_read.value > 0.005e9);
  CHECK(rates.disk_read.value < 1000e9);
  CHECK(rates.page_cache_read.value > 0.1e9);
  CHECK(rates.host.dispatch.value >= 0);
  CHECK(rates.host.dispatch.value < 1e-3);
  for (DType d : opt.dtypes) {
    const sim::RateCurve c = rates.host.flops_for(d);
    CHECK(c.source == sim::Source::kCalibrated);
    CHECK(c.points.size() == 3);  // M = 1, 16, 64
    for (const auto& [m, v] : c.points) {
      CHECK(v > 1e8);
      CHECK(v < 1e14);
    }
  }
  // Attention over context lengths: the decode rate (M = 1) and three prefill lengths, and a
  // fixed cost per op below a millisecond.
  for (DType d : opt.dtypes) {
    const sim::RateCurve a = rates.host.attention_flops_for(d);
    CHECK(a.source == sim::Source::kCalibrated);
    REQUIRE(a.points.size() == 4);  // M = 1, 16, 64, 256
    CHECK(a.points[0].first == 1.0);
    CHECK(a.points[3].first == 256.0);
    for (const auto& [m, v] : a.points) {
      CHECK(v > 1e7);
      CHECK(v < 1e14);
    }
  }
  CHECK(rates.host.attention_overhead.source == sim::Source::kCalibrated);
  CHECK(rates.host.attention_overhead.value >= 0);
  CHECK(rates.host.attention_overhead.value < 1e-3);
  for (DType d : opt.dtypes) CHECK(rates.host.input_cost(d) < 1e-7);  // under 100 ns per input element
  CHECK(r.yaml.find("matmul_input_ns:") != std::string::npos);
  CHECK(r.yaml.find("tiny_model_probe_us:") != std::string::npos);
  CHECK(r.trace.events().size() > 10);  // module ranges of the whole-model runs
  CHECK(r.yaml.find("provenance:") != std::string::npos);
  CHECK(r.yaml.find("whole_model_runs:") != std::string::npos);
}

TEST_CASE("read_weights reads every memory-resident weight once, and not those on disk", "[unit][profile]") {
  namespace fs = std::filesystem;
  const ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  exec::ModelWeights w = exec::ModelWeights::random(cfg, DType::kBFloat16, 3);
  double all = 0;
  for (const std::string& n : w.names()) all += static_cast<double>(exec::weight_bytes(w.get(n).w));
  for (int threads : {1, 2}) {
    const WeightsRead r = read_weights(w, threads);
    CHECK(r.bytes == all);
    CHECK(r.seconds > 0);
    CHECK(r.gbs() == Approx(all / r.seconds / 1e9));
  }
  const std::string down = "model.layers.0.mlp.down_proj.weight";
  const double down_bytes = static_cast<double>(exec::weight_bytes(w.get(down).w));
  const fs::path dir = fs::temp_directory_path() / ("dmap_read_weights_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  w.offload_to_disk({down}, dir.string());
  CHECK(read_weights(w, 2).bytes == all - down_bytes);  // read from its file at use, not resident
  fs::remove_all(dir);
  CHECK(WeightsRead{}.gbs() == 0);  // nothing timed: no rate
}

TEST_CASE("map_placement: unit devices, tensor homes, the first GPU, and whole layers only", "[unit][profile]") {
  const std::string dir = std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32";
  const ModelSpec spec = load_model_spec(dir + "/config.json");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const ModuleTree tree = build_module_tree(spec);
  const exec::ModelWeights w = exec::ModelWeights::random(cfg, DType::kFloat32, 1);
  REQUIRE(cfg.layers == 2);
  DeviceMap dm;
  dm.assign("model.layers.1", Device::gpu(1));  // map order: the first GPU listed is the main one
  dm.assign("model.embed_tokens", Device::cpu());
  dm.assign("model.layers.0", Device::disk());
  dm.assign("model.norm", Device::gpu(0));
  dm.assign("lm_head", Device::cpu());
  const exec::Placement p = exec::map_placement(tree, dm, w, cfg, exec::Semantics::kPrefetch);
  CHECK(p.semantics == exec::Semantics::kPrefetch);
  CHECK(p.main_gpu == 1);
  REQUIRE(p.units.size() == 5);
  CHECK(p.units[0] == Device::cpu());
  CHECK(p.units[1] == Device::disk());
  CHECK(p.units[2] == Device::gpu(1));
  CHECK(p.units[3] == Device::gpu(0));
  CHECK(p.units[4] == Device::cpu());
  CHECK(p.tensor_home.at("model.layers.0.mlp.up_proj.weight") == Device::disk());
  CHECK(p.tensor_home.at("lm_head.weight") == Device::cpu());

  DeviceMap split = dm;
  split.erase("model.layers.0");
  split.assign("model.layers.0.self_attn", Device::gpu(0));
  split.assign("model.layers.0.mlp", Device::cpu());
  split.assign("model.layers.0.input_layernorm", Device::gpu(0));
  split.assign("model.layers.0.post_attention_layernorm", Device::gpu(0));
  CHECK_THROWS_WITH(exec::map_placement(tree, split, w, cfg, exec::Semantics::kAccelerate),
                    Catch::Contains("splits model.layers.0 across devices"));
}

TEST_CASE("LoadProbe counts other processes' CPU time, not this process's", "[unit][profile][slow]") {
  // This process keeps one core busy for 0.6 s: a probe that failed to subtract its own time
  // would report about one core more foreign load than the same probe over an idle 0.6 s just
  // before. Other processes (a parallel test, on a shared machine) load it too, and their load
  // varies: the probe gets five tries to see less than 0.6 core more than its idle twin.
  double least = 1e9;
  for (int attempt = 0; attempt < 5 && least >= 0.6; ++attempt) {
    const dmap::profile::LoadProbe idle;
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    const double baseline = idle.foreign_cores();
    const dmap::profile::LoadProbe probe;
    std::atomic<bool> stop{false};
    std::thread spin([&] {
      volatile double x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    stop = true;
    spin.join();
    CHECK(probe.elapsed_s() >= 0.6);
    CHECK(probe.foreign_cores() >= 0);
    least = std::min(least, probe.foreign_cores() - baseline);
  }
  CHECK(least < 0.6);
  // wait_quiet with no patience returns after one window and says what it saw.
  dmap::profile::QuietSettings qs;
  qs.window_s = 0.1;
  qs.max_wait_s = 0;
  qs.threshold_cores = 1e9;  // anything counts as quiet
  const auto q = dmap::profile::wait_quiet(qs);
  CHECK(q.quiet == (qs.windows <= 1));
  CHECK(q.load_cores >= 0);
  CHECK(q.waited_s >= 0.1);
}

TEST_CASE("the self-check passes a calibration within 5 % and refuses one past it, naming the row", "[unit][profile]") {
  std::vector<SelfCheckRow> rows = {{DType::kFloat32, "cpu", 1.0, 1.001, 0.1, 0.1},
                                    {DType::kBFloat16, "disk 7/22 layers", 2.0, 2.09, 0.2, 0.191}};
  SelfCheckVerdict v = check_self(rows);
  CHECK(v.passed);
  CHECK(v.worst == Approx(0.045));
  CHECK(v.text.find("<- off") == std::string::npos);
  rows[1].predicted_prefill_s = 2.12;  // +6 % in prefill
  v = check_self(rows);
  CHECK_FALSE(v.passed);
  CHECK(v.worst == Approx(0.06));
  CHECK(v.text.find("bfloat16  disk 7/22 layers") != std::string::npos);
  CHECK(v.text.find("( +6.0 %); decode  200.00 ms/token measured,  191.00 predicted ( -4.5 %)  <- off") !=
        std::string::npos);
  CHECK_FALSE(check_self({}).passed);  // nothing measured is not a pass
  // A disk run measured with the machine 8 % slower than in the CPU-only runs (their resident
  // modules' ratio): compared at the CPU-only runs' state, 200 / 1.08 = 185.2 ms against 191 (+3.1 %).
  rows[1].predicted_prefill_s = 2.0;
  rows[1].state_ratio = 1.08;
  v = check_self(rows);
  CHECK(v.passed);
  CHECK(v.worst == Approx(0.191 * 1.08 / 0.2 - 1));
  CHECK(v.text.find("200.00 ms/token measured (185.19 at the CPU-only runs' machine state: / 1.080),  191.00 "
                    "predicted ( +3.1 %)") != std::string::npos);
  // The ratio of a disk run from its pairs (disk_state_ratio): the AVX2 EPYC's bfloat16 runs of
  // 2026-12-07 — CPU-only median 83.51 ms, the disk runs' median 86.92, the pairs' extras 12.1,
  // 12.0 and 10.5 ms: at the CPU-only state 83.51 + 12.0 = 95.51 ms, so the ratio is 0.910.
  CHECK(disk_state_ratio(0.08692, 0.08351, {0.0121, 0.0120, 0.0105}) == Approx(0.08692 / 0.09551));
  CHECK(disk_state_ratio(0.1, 0.09, {0.004, 0.012}) == Approx(0.1 / 0.098));  // an even count: the mean of two
  CHECK(disk_state_ratio(0.1, 0.09, {}) == 1.0);                              // no pairs: no correction
  rows[1].state_ratio = 0.9;  // faster then: 222.2 ms against 191, -14 %
  CHECK_FALSE(check_self(rows).passed);
  // A phase not checked is shown, not held to the limit; the other phase still is.
  rows[1].decode_checked = false;
  v = check_self(rows);
  CHECK(v.passed);
  CHECK(v.text.find("(-14.1 %, not checked)") != std::string::npos);
  rows[1].predicted_prefill_s = 2.2;  // +10 % in the prefill, still checked
  CHECK_FALSE(check_self(rows).passed);
}

TEST_CASE("the validation's drift figures: per-round probe scaling, steady rounds only, in-fit rows left out",
          "[unit][profile]") {
  ValidationResult v;
  v.run.new_tokens = 9;
  v.probed = true;
  auto row = [](const std::string& placement, double pred_pre, double pred_dec, std::vector<double> pre,
                std::vector<double> dec, std::vector<double> ratios) {
    ValidationRow r;
    r.c.model_id = "m";
    r.c.placement = placement;
    r.predicted_prefill_s = pred_pre;
    r.predicted_decode_s = pred_dec;
    r.prefill_rounds = std::move(pre);
    r.decode_rounds = std::move(dec);
    r.probe_ratios = std::move(ratios);
    return r;
  };
  // The machine 10 % and 20 % slower in two rounds, as calibrated in the third: decode tracks it.
  v.rows.push_back(row("cpu", 1.0, 0.1, {1.1, 1.0, 1.2}, {0.11, 0.1, 0.12}, {1.1, 1.0, 1.2}));
  // Never steady (+5 %, +6 %): counted in the raw and scaled figures, not in the steady ones.
  v.rows.push_back(row("disk 5/22 layers", 2.0, 0.2, {2.0, 2.0}, {0.21, 0.212}, {1.05, 1.06}));
  // The calibration's own run, 50 % off: left out of every error figure, still in the regret.
  ValidationRow fit = row("disk 11/22 layers", 0.9, 0.1, {1.5, 1.5, 1.5}, {0.15, 0.15, 0.15}, {1.0, 1.0, 1.0});
  fit.in_fit = true;
  v.rows.push_back(fit);
  summarize(v);
  const ValidationRow& a = v.rows[0];
  CHECK(a.measured_decode_s == Approx(0.11));
  CHECK(a.decode_error() == Approx(0.1 / 0.11 - 1));
  CHECK(a.probe_ratio == Approx(1.1));
  CHECK(a.scaled_decode_s == Approx(0.1));  // every round's decode / ratio is 0.1
  CHECK(a.scaled_decode_error() == Approx(0.0).margin(1e-12));
  CHECK(a.steady_rounds == 1);
  CHECK(a.steady_decode_s == Approx(0.1));
  CHECK(a.steady_prefill_s == Approx(1.0));
  CHECK(a.steady_decode_error() == Approx(0.0).margin(1e-12));
  const ValidationRow& b = v.rows[1];
  CHECK_FALSE(b.steady());
  CHECK(b.scaled_decode_s == Approx((0.21 / 1.05 + 0.212 / 1.06) / 2));
  CHECK(v.held_out == 2);
  CHECK(v.steady_rows == 1);
  CHECK(v.steady_decode_median_abs == Approx(0.0).margin(1e-12));
  CHECK(v.decode_median_abs == Approx((std::fabs(0.1 / 0.11 - 1) + std::fabs(0.2 / 0.211 - 1)) / 2));
  CHECK(v.scaled_decode_median_abs == Approx(std::fabs(0.2 / b.scaled_decode_s - 1) / 2));
  // Regret: predicted fastest is the in-fit row (0.9 + 8 x 0.1), measured fastest is "cpu" (1.1 + 8 x 0.11).
  REQUIRE(v.regrets.size() == 1);
  CHECK(v.regrets[0].recommended == "disk 11/22 layers");
  CHECK(v.regrets[0].fastest == "cpu");
  CHECK(v.max_regret == Approx((1.5 + 8 * 0.15) / (1.1 + 8 * 0.11) - 1));
  // The noise floor from the held-out rows' own rounds (the in-fit row, perfectly steady, left out).
  CHECK(v.decode_noise.rows == 2);
  CHECK(v.decode_noise.spread_rows == 2);
  CHECK(v.decode_noise.sigma > 0.05);
  CHECK(v.decode_noise.median_abs > 0);
  CHECK(v.prefill_noise.sigma > 0.05);
  const std::string md = report::validation_markdown(validation_table(v, "n", "machine", "c.yaml", "c.svg", "c.json"));
  CHECK_THAT(md, Catch::Contains("| time per output token, a perfect prediction (the rounds' own spread) |") &&
                     Catch::Contains("Measurement noise: the rounds of one placement spread by σ = "));
  // Without probes nothing is scaled and no row is steady.
  for (auto& r : v.rows) r.probe_ratios.clear();
  summarize(v);
  CHECK(v.steady_rows == 0);
  CHECK(v.rows[0].scaled_decode_error() == Approx(v.rows[0].decode_error()));
}

TEST_CASE("the validation's page-cache drift: disk rows scale their copies by the page-cache probe",
          "[unit][profile]") {
  ValidationResult v;
  v.run.new_tokens = 9;
  v.probed = true;
  ValidationRow r;
  r.c.model_id = "m";
  r.c.placement = "disk 11/22 layers";
  r.predicted_prefill_s = 1.0;
  r.predicted_decode_s = 0.2;
  r.predicted_decode_disk_s = 0.1;  // half of decode copies from the page cache
  // Round 1 as calibrated; round 2 the memory probe as calibrated but page-cache copies 2x slower.
  r.prefill_rounds = {1.0, 1.0};
  r.decode_rounds = {0.2, 0.3};
  r.probe_ratios = {1.0, 1.0};
  r.page_cache_ratios = {1.0, 2.0};
  v.rows.push_back(r);
  summarize(v);
  const ValidationRow& a = v.rows[0];
  // Each round's decode over (1/2 x 1 + 1/2 x its page-cache ratio): 0.2 / 1 and 0.3 / 1.5.
  CHECK(a.scaled_decode_s == Approx(0.2));
  CHECK(a.scaled_decode_error() == Approx(0.0).margin(1e-12));
  // Steady only in round 1: the page cache moved in round 2 although the memory probe did not.
  CHECK(a.steady_rounds == 1);
  CHECK(a.steady_decode_s == Approx(0.2));
  // Without page-cache ratios (an older calibration) the memory probe alone decides.
  v.rows[0].page_cache_ratios.clear();
  summarize(v);
  CHECK(v.rows[0].steady_rounds == 2);
  CHECK(v.rows[0].scaled_decode_s == Approx(0.25));
}

TEST_CASE("a round is steady when both probes read within the band: what the extra rounds wait for",
          "[unit][profile]") {
  ValidationRow r;
  r.probe_ratios = {1.05, 0.98, 1.02};
  CHECK_FALSE(steady_round(r, 0));
  CHECK(steady_round(r, 1));
  CHECK(steady_round(r, 2));
  CHECK_FALSE(steady_round(r, 3));  // no such round
  CHECK(any_steady_round(r));
  // The page-cache probe off in the rounds the memory probe was steady: no steady round at all.
  r.page_cache_ratios = {1.0, 1.04, 0.95};
  CHECK_FALSE(steady_round(r, 1));
  CHECK_FALSE(steady_round(r, 2));
  CHECK_FALSE(any_steady_round(r));
  r.page_cache_ratios = {1.0, 1.01, 0.95};
  CHECK(any_steady_round(r));
  // Not probed: never steady, so a validation without a calibration probe runs no extra round.
  CHECK_FALSE(any_steady_round(ValidationRow{}));
}

TEST_CASE("the calibration's load guard keeps quiet tries, re-measures loaded ones and refuses past its retries",
          "[unit][profile]") {
  // Synthetic loads, one per try, in order.
  auto loads = std::make_shared<std::vector<double>>();
  LoadGuard::Watch watch = [loads] {
    const double v = loads->front();
    loads->erase(loads->begin());
    return std::function<double()>([v] { return v; });
  };
  LoadGuardSettings s;
  s.quiet.max_wait_s = 0;  // do not wait for real quiet here
  int tries = 0;
  *loads = {0.9, 0.4, 0.05};
  LoadGuard guard(s, watch);
  CHECK(guard.run("whole-model run float32 cpu-only", [&] { return ++tries; }) == 3);  // the third try kept
  CHECK(guard.remeasured() == 2);
  CHECK(guard.max_foreign_cores() == Approx(0.05));
  *loads = {0.16, 0.5, 0.99};
  tries = 0;
  CHECK_THROWS_WITH(guard.run("disk probe", [&] { return ++tries; }),
                    Catch::Contains("other processes kept 0.99 cores busy during the disk probe") &&
                        Catch::Contains("in each of 3 tries, so nothing was written"));
  CHECK(tries == 3);
  // Disabled: every try is kept, whatever the load.
  s.enabled = false;
  *loads = {3.0};
  LoadGuard off(s, watch);
  CHECK(off.run("dispatch probe", [] { return 7; }) == 7);
  CHECK(off.remeasured() == 0);
}

TEST_CASE("the detected host is this machine: its CPU, cores and RAM, as a host preset that parses",
          "[unit][profile]") {
  const std::string y = detected_host_yaml();
  YAML::Node n;
  n["host"] = YAML::Load(y);
  n["disk"] = "nvme_gen3";
  const sim::Hardware hw = sim::parse_hardware(n, "test", std::string(DMAP_SOURCE_DIR) + "/configs/hardware");
  CHECK(hw.host.cores == static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  CHECK(hw.host.name.find(cpu_description()) == 0);
  CHECK(hw.host.name.find(cpu_isa()) != std::string::npos);
  CHECK(hw.host.name.find("(detected)") != std::string::npos);
  // RAM: MemTotal, to 0.01 GiB.
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  long long kb = 0;
  while (in >> key >> kb >> unit && key != "MemTotal:") {
  }
  REQUIRE(kb > 0);
  CHECK(static_cast<double>(hw.host.ram) == Approx(static_cast<double>(kb) * 1024).epsilon(0.001));
  CHECK(hw.host.reserved_ram < hw.host.ram);
  CHECK(hw.host.peak_flops.at(DType::kFloat32).value > 0);
  // The file-name form of the same CPU: lower case, no spaces, the CPU count and ISA tag at the end.
  const std::string slug = cpu_slug();
  CHECK(slug.find(' ') == std::string::npos);
  CHECK(slug.find(std::to_string(hw.host.cores) + "cpu") != std::string::npos);
  for (char ch : slug)
    CHECK((std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) || ch == '_'));
}

// ---- the transformers runtime (profile/runtime_probe.h, runtime_validate.h) ------------------

namespace {
const char* kProbeJson = R"({"torch": "1.13.1", "threads": 2, "prompt": 16, "new_tokens": 4, "model_type": "llama",
 "implementation": "plain PyTorch", "runs": [{"dtype": "float32", "prefill_s": [0.03, 0.01, 0.02],
 "decode_token_s": [0.004, 0.002, 0.003], "loop_s": [0.0001, 0.0001, 0.0001], "tiny_decode_token_s": [0.001, 0.001, 0.002]}]})";
}  // namespace

TEST_CASE("the runtime probe's JSON: medians per dtype, errors name the output", "[unit][profile][runtime]") {
  const TorchProbe p = parse_torch_probe(kProbeJson, "probe.json");
  CHECK(p.torch_version == "1.13.1");
  CHECK(p.threads == 2);
  REQUIRE(p.runs.size() == 1);
  CHECK(p.runs[0].prefill() == Approx(0.02));
  CHECK(p.runs[0].decode() == Approx(0.0031));  // forward + loop, the median
  CHECK(p.runs[0].tiny_decode() == Approx(0.001));
  CHECK_THROWS_WITH(parse_torch_probe(R"({"torch": "x"})", "probe.json"), Catch::Contains("probe.json"));
  std::string bad = kProbeJson;
  bad.replace(bad.find("0.004"), 5, "-0.04");
  CHECK_THROWS_WITH(parse_torch_probe(bad, "probe.json"), Catch::Contains("decode_token_s"));
  CHECK_THROWS_WITH(parse_torch_probe("[1, 2]", "probe.json"), Catch::Contains("JSON object"));
  // The one-row products the probe timed (--matvec), and their errors.
  std::string mv = kProbeJson;
  const std::string tiny_key = R"("tiny_decode_token_s": [0.001, 0.001, 0.002])";
  mv.replace(mv.find(tiny_key), tiny_key.size(),
             tiny_key + R"(, "matvec": [{"n": 2048, "k": 512, "seconds": 2e-5}, {"n": 64, "k": 64, "seconds": 1e-6}])");
  const TorchProbe q = parse_torch_probe(mv, "probe.json");
  REQUIRE(q.runs[0].matvec.size() == 2);
  CHECK(q.runs[0].matvec[0].n == 2048);
  CHECK(q.runs[0].matvec[0].k == 512);
  CHECK(q.runs[0].matvec[1].seconds == Approx(1e-6));
  std::string neg = mv;
  neg.replace(neg.find("2e-5"), 4, "-2e-5");
  CHECK_THROWS_WITH(parse_torch_probe(neg, "probe.json"), Catch::Contains("probe.json") && Catch::Contains("matvec"));
  std::string zero = mv;
  zero.replace(zero.find(R"("n": 64)"), 7, R"("n": 0)");
  CHECK_THROWS_WITH(parse_torch_probe(zero, "probe.json"), Catch::Contains("positive"));
  // A disk-offload run's copies timed apart, and its faults per decode step.
  std::string off = kProbeJson;
  off.replace(off.find(tiny_key), tiny_key.size(),
              tiny_key + R"(, "decode_minor_faults": [120, 80, 100], "prefill_minor_faults": [7, 8, 9])");
  off.replace(off.find(R"("runs")"), 6, R"("offload_rates": {"copy_gbs": 2.5, "fresh_page_us": 7.5}, "runs")");
  const TorchProbe o = parse_torch_probe(off, "probe.json");
  REQUIRE(o.offload_rates);
  CHECK(o.offload_rates->copy_gbs == Approx(2.5));
  CHECK(o.offload_rates->fresh_page_us == Approx(7.5));
  CHECK(o.runs[0].decode_faults == std::vector<double>{120, 80, 100});
  CHECK(o.runs[0].prefill_faults == std::vector<double>{7, 8, 9});
  CHECK(!p.offload_rates);
  CHECK(!o.keep_freed);
  std::string kept = off;
  kept.replace(kept.find(R"("runs")"), 6, R"("glibc_keeps_freed": true, "runs")");
  CHECK(parse_torch_probe(kept, "probe.json").keep_freed);
  kept.replace(kept.find("true"), 4, "\"yes\"");
  CHECK_THROWS_WITH(parse_torch_probe(kept, "probe.json"), Catch::Contains("glibc_keeps_freed"));
  std::string zero_rate = off;
  zero_rate.replace(zero_rate.find("2.5"), 3, "0");
  CHECK_THROWS_WITH(parse_torch_probe(zero_rate, "probe.json"), Catch::Contains("copy_gbs"));
  std::string neg_faults = off;
  neg_faults.replace(neg_faults.find("[120"), 4, "[-1");
  CHECK_THROWS_WITH(parse_torch_probe(neg_faults, "probe.json"), Catch::Contains("decode_minor_faults"));
}

TEST_CASE("a fraction of the layers on disk: the nearest count, halves up", "[unit][profile]") {
  CHECK(layers_of_fraction(0, 22) == 0);
  CHECK(layers_of_fraction(0.25, 22) == 6);  // 5.5
  CHECK(layers_of_fraction(0.5, 22) == 11);
  CHECK(layers_of_fraction(0.25, 26) == 7);  // 6.5
  CHECK(layers_of_fraction(0.25, 28) == 7);
  CHECK(layers_of_fraction(1, 22) == 22);
}

TEST_CASE("the runtime probe's sessions pooled: one slow process does not move the medians",
          "[unit][profile][runtime]") {
  const TorchProbe a = parse_torch_probe(kProbeJson, "a.json");
  std::string slow_json = kProbeJson;  // a process in a slow spell: every decode 1.5x
  slow_json.replace(slow_json.find("[0.004, 0.002, 0.003]"), 21, "[0.006, 0.003, 0.0045]");
  const TorchProbe slow = parse_torch_probe(slow_json, "b.json");
  std::string grid_json = kProbeJson;
  const std::string tiny_key = R"("tiny_decode_token_s": [0.001, 0.001, 0.002])";
  grid_json.replace(grid_json.find(tiny_key), tiny_key.size(),
                    tiny_key + R"(, "matvec": [{"n": 2048, "k": 512, "seconds": 2e-5}])");
  const TorchProbe with_grid = parse_torch_probe(grid_json, "c.json");
  const TorchProbe m = merge_torch_probes({a, slow, with_grid});
  REQUIRE(m.runs.size() == 1);
  CHECK(m.runs[0].decode_s.size() == 9);
  CHECK(m.runs[0].prefill_s.size() == 9);
  CHECK(m.runs[0].loop_s.size() == 9);
  CHECK(m.runs[0].tiny_decode_s.size() == 9);
  // Pooled decode steps (forward + 0.1 ms loop): 2.1 2.1 3.1 3.1 3.1 4.1 4.1 4.6 6.1 ms: median 3.1,
  // where the slow process alone has 4.6.
  CHECK(m.runs[0].decode() == Approx(0.0031));
  CHECK(slow.runs[0].decode() == Approx(0.0046));
  CHECK(m.runs[0].matvec.size() == 1);  // the grid of the session that timed it
  CHECK(m.torch_version == "1.13.1");
  // Sessions that do not match are a bug.
  TorchProbe other = a;
  other.runs[0].dtype = DType::kBFloat16;
  CHECK_THROWS_AS(merge_torch_probes({a, other}), dmap::InternalError);
  other = a;
  other.prompt = 64;
  CHECK_THROWS_AS(merge_torch_probes({a, other}), dmap::InternalError);
  other = a;  // a disk placement's sessions pool only with the same placement and glibc mode
  other.disk_layers = 5;
  CHECK_THROWS_AS(merge_torch_probes({a, other}), dmap::InternalError);
  TorchProbe d = other, kept = other;
  kept.keep_freed = true;
  CHECK_THROWS_AS(merge_torch_probes({d, kept}), dmap::InternalError);
  d.runs[0].prefill_faults = {100};
  TorchProbe d2 = d;
  d2.runs[0].prefill_faults = {300};
  CHECK(merge_torch_probes({d, d2}).runs[0].prefill_faults.size() == 2);
  // The disk probe's rates alone: the median of the sessions that measured them, not the first's.
  TorchProbe r1 = d, r2 = d, r3 = d;
  r1.offload_rates = TorchProbe::OffloadRates{2.0, 9.0};
  r2.offload_rates = TorchProbe::OffloadRates{3.0, 7.0};
  r3.offload_rates = TorchProbe::OffloadRates{2.5, 8.0};
  const TorchProbe rates = merge_torch_probes({r1, d, r2, r3});
  REQUIRE(rates.offload_rates);
  CHECK(rates.offload_rates->copy_gbs == Approx(2.5));
  CHECK(rates.offload_rates->fresh_page_us == Approx(8.0));
  CHECK_FALSE(merge_torch_probes({d, d2}).offload_rates);
}

// A fixture for the runtime fits: a tiny llama, a synthetic host calibration, and the operator
// count of its decode step under `runtime` (what one microsecond per operator adds).
struct RuntimeFitFixture {
  ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json");
  sim::Hardware hw = sim::parse_hardware(YAML::Node("cloud_xeon_2vcpu_vm"), "test",
                                         std::string(DMAP_SOURCE_DIR) + "/configs/hardware");
  sim::Calibration base = [] {
    sim::Calibration c;
    c.host.memory_bandwidth_gbs = 40;
    c.host.dispatch_overhead_us = 1;
    c.host.matmul_gflops[DType::kFloat32] = {{1, 20}, {64, 200}};
    c.host.matmul_gflops[DType::kBFloat16] = {{1, 30}, {64, 150}};
    return c;
  }();
  DeviceMap cpu = layers_on_disk_map(spec, 0);
  int64_t prompt = 16, new_tokens = 6;
  sim::Runtime runtime;
  explicit RuntimeFitFixture(sim::Runtime r) : runtime(r) {}
  sim::Prediction run(const sim::Calibration& c, DType d) const {
    return predict(spec, d, cpu, hw, &c, prompt, new_tokens, sim::Semantics::kCpu, runtime);
  }
  double kernels() const {
    sim::Calibration counting = base;
    counting.runtimes[runtime].op_overhead_us = 1.0;
    counting.runtimes[runtime].step_overhead_us = 0.0;
    sim::Calibration zero = counting;
    zero.runtimes[runtime].op_overhead_us = 0.0;
    return (run(counting, DType::kFloat32).decode_token_s - run(zero, DType::kFloat32).decode_token_s) / 1e-6;
  }
};

namespace {
// The transformers profile the fits below must recover: 15 us per operator, 120 us between
// forwards, the efficiencies per dtype.
sim::RuntimeProfile known_torch_profile() {
  sim::RuntimeProfile known;
  known.measured = true;
  known.op_overhead_us = 15;
  known.step_overhead_us = 120;
  known.matvec_efficiency = {{DType::kFloat32, 0.6}, {DType::kBFloat16, 0.3}};
  known.matmul_efficiency = {{DType::kFloat32, 0.4}, {DType::kBFloat16, 0.7}};
  return known;
}
// A probe's run of one dtype whose timings are a prediction's: the decode step split into a
// forward and a 120 us loop, the tiny model at 15 us per operator.
TorchRun synthetic_run(DType d, const sim::Prediction& t, double kernels) {
  TorchRun r;
  r.dtype = d;
  r.prefill_s = {t.prefill_s};
  r.loop_s = {120e-6};
  r.decode_s = {t.decode_token_s - 120e-6};
  r.tiny_decode_s = {15e-6 * kernels};
  return r;
}
}  // namespace

TEST_CASE("the transformers profile fit recovers a known profile from the timings it predicts",
          "[unit][profile][runtime]") {
  const RuntimeFitFixture fx(sim::Runtime::kTransformers);
  const ModelSpec& spec = fx.spec;
  const sim::Hardware& hw = fx.hw;
  const sim::Calibration& base = fx.base;
  const sim::RuntimeProfile known = known_torch_profile();
  sim::Calibration truth = base;
  truth.runtimes[sim::Runtime::kTransformers] = known;
  const int64_t prompt = fx.prompt, new_tokens = fx.new_tokens;
  auto decode = [&](const sim::Calibration& c, DType d) { return fx.run(c, d); };
  const double kernels = fx.kernels();
  REQUIRE(kernels > 10);
  TorchProbe probe;
  probe.torch_version = "synthetic";
  probe.threads = 2;
  probe.prompt = prompt;
  probe.new_tokens = new_tokens;
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    probe.runs.push_back(synthetic_run(d, decode(truth, d), kernels));
  }
  const TorchFit f = fit_torch_profile(spec, hw, base, probe);
  CHECK(f.kernels_per_step == Approx(kernels));
  CHECK(*f.profile.op_overhead_us == Approx(15).epsilon(1e-6));
  CHECK(*f.profile.step_overhead_us == Approx(120).epsilon(1e-6));
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    INFO(dtype_name(d));
    CHECK(f.profile.matvec_for(d) == Approx(known.matvec_for(d)).epsilon(1e-3));
    CHECK(f.profile.matmul_for(d) == Approx(known.matmul_for(d)).epsilon(1e-3));
  }
  CHECK(check_self(f.self_check).passed);
  CHECK(check_self(f.self_check).worst < 1e-4);
  CHECK(f.profile.measured);
  // A probe whose decode is slower than its timings allow moves the efficiency the other way.
  TorchProbe slower = probe;
  for (auto& r : slower.runs) r.decode_s[0] *= 1.5;
  CHECK(fit_torch_profile(spec, hw, base, slower).profile.matvec_for(DType::kFloat32) < 0.6);
  // With PyTorch's own one-row products timed over the grid, the profile takes their terms and the
  // whole-model efficiency is the residual against them: still exact on the model's own run.
  TorchProbe own = probe;
  for (auto& r : own.runs) {
    const double elt = r.dtype == DType::kFloat32 ? 4 : 2;
    for (const auto& [n, k] : matvec_shapes(spec)) {
      r.matvec.push_back({n, k, 4e-6 + static_cast<double>(n * k) * elt / 20e9 + static_cast<double>(n) * 3e-9});
    }
  }
  const TorchFit g = fit_torch_profile(spec, hw, base, own);
  CHECK(g.profile.matvec_gbs.at(DType::kFloat32) == Approx(20).epsilon(0.01));
  CHECK(g.profile.matvec_row_ns.at(DType::kBFloat16) == Approx(3).epsilon(0.02));
  CHECK(check_self(g.self_check).worst < 1e-4);
  CHECK(g.fit["float32"]["matvec"]["samples"].as<int>() == static_cast<int>(matvec_shapes(spec).size()));
  CHECK(g.summary[1].find("PyTorch's own measured rate") != std::string::npos);
}

TEST_CASE("the transformers fit recovers accelerate's disk-offload reads", "[unit][profile][runtime]") {
  // TinyLlama's shapes (reads of 5 layers weigh against the step; its float32 MLP weights, 44 MiB,
  // are always mapped afresh, its bfloat16 ones, 22 MiB, come from glibc's heap), the fixture's
  // calibration.
  RuntimeFitFixture fx(sim::Runtime::kTransformers);
  fx.spec = resolve_model("tinyllama_1b", "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  fx.cpu = layers_on_disk_map(fx.spec, 0);
  fx.base.disk.read_gbs = 20;  // a disk that keeps up with the copies: they set a cold prefill's pace
  const sim::RuntimeProfile known = known_torch_profile();
  sim::Calibration truth = fx.base;
  truth.runtimes[sim::Runtime::kTransformers] = known;
  // Within a forward the copies take 1.25 (float32) and 1.4 (bfloat16) x their time alone (2.5
  // GB/s, as the probe times them), a fresh page 8 us (6 alone), 30 % of the heap's pages fresh.
  sim::Calibration offloading = truth;
  sim::RuntimeProfile& t = offloading.runtimes[sim::Runtime::kTransformers];
  t.offload_copy_gbs = 2.5;
  t.fresh_page_us = 8;
  t.offload_copy_scale = {{DType::kFloat32, 1.25}, {DType::kBFloat16, 1.4}};
  t.heap_fresh_share = 0.3;
  t.offload_cold_scale = {{DType::kFloat32, 1.3}, {DType::kBFloat16, 1.8}};
  sim::Calibration keeping = offloading;  // glibc keeping what it frees: no page fresh
  keeping.runtimes[sim::Runtime::kTransformers].fresh_page_us = 0.0;
  const double kernels = fx.kernels();
  const int64_t layers = exec::exec_config(fx.spec).layers;
  const DeviceMap disk_map = layers_on_disk_map(fx.spec, 5);
  const ModuleTree tree = build_module_tree(fx.spec);
  auto at = [&](const sim::Calibration& c, const DeviceMap& m, DType d) {
    return predict(fx.spec, d, m, fx.hw, &c, fx.prompt, fx.new_tokens, sim::Semantics::kCpu,
                   sim::Runtime::kTransformers);
  };
  const double map_faults = 1000;  // the memory maps' own faults per step, in both runs
  struct Probes {
    TorchProbe cpu, offload, kept;
  };
  auto probes = [&](std::vector<DType> dtypes) {
    Probes out;
    for (TorchProbe* p : {&out.cpu, &out.offload, &out.kept}) {
      p->torch_version = "synthetic";
      p->threads = 2;
      p->prompt = fx.prompt;
      p->new_tokens = fx.new_tokens;
    }
    out.offload.disk_layers = out.kept.disk_layers = 5;
    out.kept.keep_freed = true;
    out.offload.offload_rates = out.kept.offload_rates = TorchProbe::OffloadRates{2.5, 6};
    for (DType d : dtypes) {
      const FreshPages pages = fresh_pages_of(tree, d, layers - 5, layers);
      out.cpu.runs.push_back(synthetic_run(d, at(truth, fx.cpu, d), kernels));
      out.offload.runs.push_back(synthetic_run(d, at(offloading, disk_map, d), kernels));
      out.offload.runs.back().decode_faults = {map_faults + pages.mapped + 0.3 * pages.heap};
      out.offload.runs.back().prefill_faults = out.offload.runs.back().decode_faults;
      out.kept.runs.push_back(synthetic_run(d, at(keeping, disk_map, d), kernels));
      out.kept.runs.back().decode_faults = out.kept.runs.back().prefill_faults = {map_faults};
    }
    return out;
  };
  const Probes pr = probes({DType::kFloat32, DType::kBFloat16});
  // float32's MLP weights are mapped afresh, bfloat16's come from the heap.
  CHECK(fresh_pages_of(tree, DType::kFloat32, layers - 5, layers).mapped > 0);
  CHECK(fresh_pages_of(tree, DType::kBFloat16, layers - 5, layers).mapped == 0);
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    // The fresh pages cost something, and the copies are slower than the executor's rates.
    CHECK(at(offloading, disk_map, d).decode_token_s > 1.1 * at(keeping, disk_map, d).decode_token_s);
    CHECK(at(keeping, disk_map, d).decode_token_s > 1.2 * at(truth, disk_map, d).decode_token_s);
  }
  const TorchFit h = fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu, &pr.offload, &pr.kept);
  CHECK(*h.profile.offload_copy_gbs == Approx(2.5));
  CHECK(h.profile.offload_copy_scale.at(DType::kFloat32) == Approx(1.25).epsilon(1e-3));
  CHECK(h.profile.offload_copy_scale.at(DType::kBFloat16) == Approx(1.4).epsilon(1e-3));
  CHECK(*h.profile.fresh_page_us == Approx(8).epsilon(2e-3));
  CHECK(*h.profile.heap_fresh_share == Approx(0.3).margin(1e-3));
  CHECK(h.profile.offload_cold_scale.at(DType::kFloat32) == Approx(1.3).epsilon(1e-3));
  CHECK(h.profile.offload_cold_scale.at(DType::kBFloat16) == Approx(1.8).epsilon(1e-3));
  CHECK_THAT(h.fit["disk_offload"]["fresh_page_from"].as<std::string>(), Catch::Contains("timed within the forwards"));
  CHECK(h.fit["disk_offload"]["fresh_page_alone_us"].as<double>() == Approx(6));
  // Two CPU-only runs; per dtype the default disk run at its fresh pages (its decode checked) and
  // the kept one (its prefill checked).
  REQUIRE(h.self_check.size() == 6);
  CHECK(h.self_check[2].placement == "disk 5/22 layers, at its fresh pages");
  CHECK((h.self_check[2].decode_checked && !h.self_check[2].prefill_checked));
  CHECK(h.self_check[3].placement == "disk 5/22 layers, glibc keeping freed memory");
  CHECK((!h.self_check[3].decode_checked && h.self_check[3].prefill_checked));
  CHECK_THAT(check_self(h.self_check).text, Catch::Contains("not checked"));
  // The kept runs' decode, other processes, are predicted and reported, not checked.
  CHECK(h.fit["disk_offload"]["bfloat16"]["kept_predicted_decode_ms"].as<double>() ==
        Approx(h.fit["disk_offload"]["bfloat16"]["kept_decode_ms"].as<double>()).epsilon(3e-3));
  CHECK(check_self(h.self_check).worst < 3e-3);
  CHECK(h.fit["disk_offload"]["float32"]["kept_decode_minor_faults"].as<double>() == Approx(map_faults));
  // The fitted profile predicts the default runs at the share it measured: exact here (both dtypes
  // found 30 %).
  sim::Calibration fitted = fx.base;
  fitted.runtimes[sim::Runtime::kTransformers] = h.profile;
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    CHECK(at(fitted, disk_map, d).decode_token_s == Approx(at(offloading, disk_map, d).decode_token_s).epsilon(3e-3));
    CHECK(at(fitted, disk_map, d).prefill_s == Approx(at(offloading, disk_map, d).prefill_s).epsilon(3e-3));
  }
  // Pages of blocks mapped afresh dearer than the heap's: told apart by the two dtypes (float32's
  // MLP weights mapped, bfloat16's from the heap).
  t.mapped_page_us = 12;
  const Probes ps = probes({DType::kFloat32, DType::kBFloat16});
  const TorchFit hs = fit_torch_profile(fx.spec, fx.hw, fx.base, ps.cpu, &ps.offload, &ps.kept);
  REQUIRE(hs.profile.mapped_page_us);
  CHECK(*hs.profile.mapped_page_us == Approx(12).epsilon(2e-3));
  CHECK(*hs.profile.fresh_page_us == Approx(8).epsilon(2e-3));
  CHECK(check_self(hs.self_check).worst < 3e-3);
  CHECK_THAT(hs.fit["disk_offload"]["fresh_page_from"].as<std::string>(), Catch::Contains("apart"));
  // One dtype whose pages all come from the heap: one figure for every page.
  t.mapped_page_us.reset();
  const Probes one16 = probes({DType::kBFloat16});
  const TorchFit h16 = fit_torch_profile(fx.spec, fx.hw, fx.base, one16.cpu, &one16.offload, &one16.kept);
  CHECK(*h16.profile.fresh_page_us == Approx(8).epsilon(2e-3));
  CHECK(!h16.profile.mapped_page_us);
  CHECK_THAT(h16.fit["disk_offload"]["fresh_page_from"].as<std::string>(), Catch::Contains("one figure"));
  // The share pools the dtypes' measured pages: bfloat16 all fresh, float32's heap none.
  Probes mixed = pr;
  for (auto& r : mixed.offload.runs) {
    const FreshPages pages = fresh_pages_of(tree, r.dtype, layers - 5, layers);
    r.decode_faults = {map_faults + pages.mapped + (r.dtype == DType::kBFloat16 ? pages.heap : 0.0)};
  }
  const FreshPages p32 = fresh_pages_of(tree, DType::kFloat32, layers - 5, layers),
                   p16 = fresh_pages_of(tree, DType::kBFloat16, layers - 5, layers);
  CHECK(*fit_torch_profile(fx.spec, fx.hw, fx.base, mixed.cpu, &mixed.offload, &mixed.kept).profile.heap_fresh_share ==
        Approx(p16.heap / (p16.heap + p32.heap)).epsilon(1e-3));
  // Too few fresh pages to time: the page at its cost alone, said so.
  Probes warm = pr;
  for (auto& r : warm.offload.runs) r.decode_faults = {map_faults + 10};
  const TorchFit w = fit_torch_profile(fx.spec, fx.hw, fx.base, warm.cpu, &warm.offload, &warm.kept);
  CHECK(*w.profile.fresh_page_us == Approx(6));
  CHECK_THAT(w.fit["disk_offload"]["fresh_page_from"].as<std::string>(), Catch::Contains("too few fresh pages"));
  // Refused: no kept run, a kept run that is not one, a disk run without its copies' timings or faults.
  CHECK_THROWS_AS(fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu, &pr.offload), RuntimeFailure);
  TorchProbe not_kept = pr.kept;
  not_kept.keep_freed = false;
  CHECK_THROWS_WITH(fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu, &pr.offload, &not_kept),
                    Catch::Contains("glibc keeping what it frees"));
  TorchProbe untimed = pr.offload;
  untimed.offload_rates.reset();
  CHECK_THROWS_AS(fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu, &untimed, &pr.kept), RuntimeFailure);
  TorchProbe no_faults = pr.offload;
  for (auto& r : no_faults.runs) r.decode_faults.clear();
  CHECK_THROWS_WITH(fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu, &no_faults, &pr.kept),
                    Catch::Contains("page faults"));
  // Without the disk runs nothing is fitted for them: the executor's rates stand.
  const TorchFit none = fit_torch_profile(fx.spec, fx.hw, fx.base, pr.cpu);
  CHECK(!none.profile.offload_copy_gbs);
  CHECK(!none.profile.heap_fresh_share);
  // measured_fresh_pages: the faults over the kept run's, never below 0; -1 without them.
  TorchRun a, k;
  a.decode_faults = {100, 300, 200};
  k.decode_faults = {50};
  CHECK(measured_fresh_pages(a, k) == Approx(150));
  CHECK(measured_fresh_pages(k, a) == Approx(0));
  CHECK(measured_fresh_pages(a, TorchRun{}) == -1);
  a.prefill_faults = {900};
  k.prefill_faults = {100};
  CHECK(measured_fresh_pages(a, k, /*prefill=*/true) == Approx(800));
  // A prefill that touched more fresh pages than a decode step is predicted at its own count.
  Probes more = pr;
  for (auto& r : more.offload.runs) {
    r.prefill_faults[0] += 20000;
    r.prefill_s[0] += 20000 * 8e-6;
  }
  const TorchFit hm = fit_torch_profile(fx.spec, fx.hw, fx.base, more.cpu, &more.offload, &more.kept);
  CHECK(hm.self_check[2].predicted_prefill_s == Approx(hm.self_check[2].measured_prefill_s).epsilon(3e-3));
  CHECK(hm.profile.offload_cold_scale.at(DType::kFloat32) == Approx(1.3).epsilon(1e-3));  // from the kept run
  // A kept run whose prefill the disk cannot have served (faster than dmap's disk rate allows): the
  // scale meets its bound and the self-check shows it.
  Probes fast = pr;
  for (auto& r : fast.kept.runs) r.prefill_s[0] = fast.cpu.runs[r.dtype == DType::kFloat32 ? 0 : 1].prefill_s[0];
  CHECK_FALSE(
      check_self(fit_torch_profile(fx.spec, fx.hw, fx.base, fast.cpu, &fast.offload, &fast.kept).self_check).passed);
  // The figures survive the calibration file.
  sim::Calibration written = fx.base;
  written.runtimes[sim::Runtime::kTransformers] = h.profile;
  const sim::Calibration read = sim::parse_calibration(sim::calibration_yaml(written), "round trip");
  const sim::RuntimeProfile& back = read.runtimes.at(sim::Runtime::kTransformers);
  CHECK(*back.offload_copy_gbs == Approx(*h.profile.offload_copy_gbs));
  CHECK(*back.fresh_page_us == Approx(*h.profile.fresh_page_us));
  CHECK(*back.heap_fresh_share == Approx(*h.profile.heap_fresh_share));
  CHECK(back.offload_copy_scale == h.profile.offload_copy_scale);
  CHECK(back.offload_cold_scale == h.profile.offload_cold_scale);
  // A share outside 0..1 is an error naming the key.
  std::string bad = sim::calibration_yaml(written);
  const auto k0 = bad.find("heap_fresh_share: ");
  REQUIRE(k0 != std::string::npos);
  bad.replace(k0, bad.find('\n', k0) - k0, "heap_fresh_share: 1.5");
  CHECK_THROWS_WITH(sim::parse_calibration(bad, "bad.yaml"), Catch::Contains("heap_fresh_share"));
  // Earlier dmaps' read figures: named, and what to do about them.
  for (const std::string old : {"offload_read_factor: {float32: 0.04}", "offload_read_scale: {float32: 0.9}",
                                "offload_cold_factor: {float32: 0.23}"}) {
    std::string old_file = sim::calibration_yaml(written);
    old_file.replace(k0, old_file.find('\n', k0) - k0, old);
    CHECK_THROWS_WITH(sim::parse_calibration(old_file, "old.yaml"),
                      Catch::Contains("old.yaml") && Catch::Contains(old.substr(0, old.find(':'))) &&
                          Catch::Contains("dmap profile --real --runtime transformers"));
  }
  // A cold scale of 0 is an error naming the key and the dtype.
  std::string zero = sim::calibration_yaml(written);
  const auto c0 = zero.find("offload_cold_scale: ");
  REQUIRE(c0 != std::string::npos);
  zero.replace(c0, zero.find('\n', c0) - c0, "offload_cold_scale: {float32: 0}");
  CHECK_THROWS_WITH(
      sim::parse_calibration(zero, "zero.yaml"),
      Catch::Contains("zero.yaml") && Catch::Contains("offload_cold_scale.float32: must be a number > 0"));
}

TEST_CASE("the llama.cpp profile fit recovers a known profile from the timings it predicts",
          "[unit][profile][runtime]") {
  const RuntimeFitFixture fx(sim::Runtime::kLlamaCpp);
  sim::RuntimeProfile known;
  known.measured = true;
  known.op_overhead_us = 0.8;
  known.step_overhead_us = 0;  // llama.cpp's per-call cost is charged per operator
  known.matvec_efficiency = {{DType::kFloat32, 0.7}, {DType::kBFloat16, 0.8}};
  known.matmul_efficiency = {{DType::kFloat32, 0.16}, {DType::kBFloat16, 0.55}};
  sim::Calibration truth = fx.base;
  truth.runtimes[sim::Runtime::kLlamaCpp] = known;
  const int64_t prompt = fx.prompt, new_tokens = fx.new_tokens;
  auto run = [&](const sim::Calibration& c, DType d) { return fx.run(c, d); };
  const double kernels = fx.kernels();
  REQUIRE(kernels > 10);
  std::vector<LlamaRun> runs;
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    const sim::Prediction t = run(truth, d);
    LlamaRun r;
    r.dtype = d;
    r.model.version = "synthetic";
    r.model.threads = 2;
    r.model.prompt = prompt;
    r.model.new_tokens = new_tokens;
    r.model.rounds = {{t.prefill_s, t.decode_token_s}};
    r.tiny.rounds = {{1e-3, 0.8e-6 * kernels}};
    runs.push_back(r);
  }
  const LlamaFit f = fit_llama_profile(fx.spec, fx.hw, fx.base, runs);
  CHECK(f.kernels_per_step == Approx(kernels));
  CHECK(*f.profile.op_overhead_us == Approx(0.8).epsilon(1e-6));
  CHECK(*f.profile.step_overhead_us == 0);
  for (DType d : {DType::kFloat32, DType::kBFloat16}) {
    INFO(dtype_name(d));
    CHECK(f.profile.matvec_for(d) == Approx(known.matvec_for(d)).epsilon(1e-3));
    CHECK(f.profile.matmul_for(d) == Approx(known.matmul_for(d)).epsilon(1e-3));
  }
  CHECK(check_self(f.self_check).worst < 1e-4);
  CHECK(f.profile.version.find("synthetic") == 0);
  CHECK(gguf_type_of(DType::kBFloat16) == GgufFileType::kBF16);
  CHECK_THROWS_AS(gguf_type_of(DType::kInt8), dmap::InputError);
}

TEST_CASE("llama.cpp's one-row product terms and load mode are fitted from its own timings",
          "[unit][profile][runtime]") {
  const RuntimeFitFixture fx(sim::Runtime::kLlamaCpp);
  // The grid: the fixture model's own shapes and the others, timed by a known law.
  const auto shapes = matvec_shapes(fx.spec);
  REQUIRE(shapes.size() >= 10);
  auto law = [](int64_t n, int64_t k, double elt) { return 1.5e-6 + n * k * elt / 48e9 + n * 7e-9; };
  std::vector<LlamaMatvec> grid;
  for (const auto& [n, k] : shapes) grid.push_back({"f32", n, k, law(n, k, 4), 0});
  grid[3].seconds *= 1.6;  // one disturbed shape: the robust fit keeps to the rest
  const MatvecTerms t = fit_matvec_terms(matvec_samples(grid), DType::kFloat32);
  CHECK(t.gbs == Approx(48).epsilon(0.01));
  CHECK(t.row_ns == Approx(7).epsilon(0.02));
  CHECK(t.samples == static_cast<int>(shapes.size()));
  // A profile fitted from runs that carry the grid and a --no-mmap run: the own terms are the
  // grid's; the load mode is --no-mmap where the mapped file decoded over 5 % slower, and the
  // whole-model efficiency is solved on that run.
  sim::RuntimeProfile known;
  known.measured = true;
  known.op_overhead_us = 0.8;
  known.step_overhead_us = 0;
  known.matvec_gbs = {{DType::kFloat32, 48}};
  known.matvec_row_ns = {{DType::kFloat32, 7}};
  known.matvec_efficiency = {{DType::kFloat32, 0.9}};
  known.matmul_efficiency = {{DType::kFloat32, 0.5}};
  sim::Calibration truth = fx.base;
  truth.runtimes[sim::Runtime::kLlamaCpp] = known;
  const double kernels = fx.kernels();
  auto run_of = [&](DType d, double mapped_factor) {
    const sim::Prediction in_memory = fx.run(truth, d);
    LlamaRun r;
    r.dtype = d;
    r.model.version = "synthetic";
    r.model.threads = 2;
    r.model.prompt = fx.prompt;
    r.model.new_tokens = fx.new_tokens;
    r.no_mmap = r.model;
    r.no_mmap.rounds = {{in_memory.prefill_s, in_memory.decode_token_s}};
    r.model.rounds = {{in_memory.prefill_s, in_memory.decode_token_s * mapped_factor}};
    r.tiny.rounds = {{1e-3, 0.8e-6 * kernels}};
    r.matvec = grid;
    r.matvec[3].seconds = law(r.matvec[3].n, r.matvec[3].k, 4);
    // Three sessions per load mode, one of them in a slow spell (and the first session's own
    // decode a slow one too): the fit rests on the sessions' median.
    const double mapped = in_memory.decode_token_s * mapped_factor, read_in = in_memory.decode_token_s;
    r.model_decodes = {mapped, mapped * 1.3, mapped};
    r.no_mmap_decodes = {read_in * 1.25, read_in, read_in};
    r.model.rounds[0].decode_s *= 1.2;
    return r;
  };
  auto fitted = [&](double mapped_factor) {
    return fit_llama_profile(fx.spec, fx.hw, fx.base, {run_of(DType::kFloat32, mapped_factor)});
  };
  const LlamaFit slow_map = fitted(1.8);
  CHECK(slow_map.profile.no_mmap);
  CHECK(slow_map.profile.load.at(DType::kFloat32));
  CHECK(slow_map.profile.mapped_factor.at(DType::kFloat32) == Approx(1.8).epsilon(1e-3));
  CHECK(slow_map.profile.matvec_gbs.at(DType::kFloat32) == Approx(48).epsilon(1e-3));
  CHECK(slow_map.profile.matvec_row_ns.at(DType::kFloat32) == Approx(7).epsilon(1e-3));
  CHECK(slow_map.profile.matvec_for(DType::kFloat32) == Approx(0.9).epsilon(1e-3));
  CHECK(check_self(slow_map.self_check).worst < 1e-4);
  // The mapped file as fast: the default load, its efficiency from the mapped run.
  const LlamaFit same = fitted(1.02);
  CHECK_FALSE(same.profile.no_mmap);
  CHECK_FALSE(same.profile.no_mmap_in(DType::kFloat32));
  CHECK(same.profile.matvec_for(DType::kFloat32) < 0.9);  // the slower mapped run, reproduced
  CHECK(check_self(same.self_check).worst < 1e-4);
  CHECK(same.self_check.front().measured_decode_s == Approx(fx.run(truth, DType::kFloat32).decode_token_s * 1.02));
  // The sessions are in the fit block, the decode it rests on beside them.
  REQUIRE(same.fit["float32"]["decode_sessions_ms"].size() == 3);
  CHECK(same.fit["float32"]["no_mmap_decode_sessions_ms"].size() == 3);
  CHECK(same.fit["float32"]["decode_ms"].as<double>() ==
        Approx(fx.run(truth, DType::kFloat32).decode_token_s * 1.02e3).epsilon(1e-3));
  // The load mode is the dtype's own: float32's mapped file 1.8x slower, bfloat16's as fast (as
  // measured on the AMD EPYC VM) -> float32 read into memory, bfloat16 mapped, each dtype's
  // efficiency solved on the run in its own mode; a dtype not measured takes the median's mode.
  const LlamaFit both =
      fit_llama_profile(fx.spec, fx.hw, fx.base, {run_of(DType::kFloat32, 1.8), run_of(DType::kBFloat16, 1.01)});
  CHECK(both.profile.no_mmap_in(DType::kFloat32));
  CHECK_FALSE(both.profile.no_mmap_in(DType::kBFloat16));
  CHECK(both.profile.no_mmap_in(DType::kFloat16) == both.profile.no_mmap);
  REQUIRE(both.self_check.size() == 2);
  for (const auto& row : both.self_check) {
    const double read_in = fx.run(truth, row.dtype).decode_token_s;
    CHECK(row.measured_decode_s == Approx(row.dtype == DType::kFloat32 ? read_in : read_in * 1.01).epsilon(1e-6));
  }
  CHECK(check_self(both.self_check).worst < 1e-4);
  CHECK(both.fit["load_float32"].as<std::string>() == "no-mmap");
  CHECK(both.fit["load_bfloat16"].as<std::string>() == "mmap");
}

TEST_CASE("the runtime validation's errors leave the fitted model out; regret picks by prediction",
          "[unit][profile][runtime]") {
  RuntimeValidation v;
  v.new_tokens = 11;  // 10 decode steps
  RuntimeRow fitted;
  fitted.in_fit = true;
  fitted.predicted_prefill_s = fitted.measured_prefill_s = 1;
  fitted.predicted_decode_s = 0.5;
  fitted.measured_decode_s = 1.0;  // -50 %: left out of the figures
  fitted.dmap.predicted_total_s = fitted.dmap.measured_total_s = 1;
  RuntimeRow a;  // dmap predicted and measured faster: no regret
  a.predicted_prefill_s = 1.1;
  a.measured_prefill_s = 1.0;
  a.predicted_decode_s = 0.21;
  a.measured_decode_s = 0.2;
  a.dmap.predicted_total_s = 1.0;
  a.dmap.measured_total_s = 1.5;
  RuntimeRow b = a;  // transformers predicted faster, dmap measured faster
  b.dmap.predicted_total_s = 10;
  b.dmap.measured_total_s = 2.0;
  b.predicted_decode_s = 0.18;  // -10 %
  v.rows = {fitted, a, b};
  summarize_runtime(v);
  CHECK(v.held_out == 2);
  CHECK(v.decode_median_abs == Approx((0.05 + 0.10) / 2));
  CHECK(v.prefill_median_abs == Approx(0.10));
  CHECK(v.rows[1].regret == 0.0);
  CHECK(v.rows[1].predicted_faster == "dmap");
  CHECK(v.rows[2].predicted_faster == "transformers");
  CHECK(v.rows[2].measured_faster == "dmap");
  CHECK(v.rows[2].regret == Approx(3.0 / 2.0 - 1));  // measured 1 + 10 x 0.2 against dmap's 2
  CHECK(v.max_regret == Approx(0.5));
  // Not probed: the scaled errors are the raw ones, no row is steady.
  CHECK_FALSE(v.rows[1].steady());
  CHECK(v.scaled_decode_median_abs == Approx(v.decode_median_abs));
  CHECK(v.steady_rows == 0);
  // One repetition per row: no spread, and the report says the floor is not known.
  CHECK(v.decode_noise.spread_rows == 0);
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"), Catch::Contains("no placement was measured twice"));
  v.rows[1].decode_rounds = {0.2, 0.22, 0.18};
  v.rows[2].decode_rounds = {0.2, 0.2, 0.2};
  summarize_runtime(v);
  CHECK(v.decode_noise.spread_rows == 2);
  CHECK(v.decode_noise.sigma > 0.05);
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"),
             Catch::Contains("a perfect prediction (the repetitions' own spread)") &&
                 Catch::Contains("this floor is a lower bound"));
}

TEST_CASE("the transformers validation's disk rows: the kept twin, the range, the error at measured fresh pages",
          "[unit][profile][runtime]") {
  const ModelSpec spec = resolve_model("tinyllama_1b", "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  RuntimeValidation v;
  v.new_tokens = 5;
  RuntimeRow cpu;  // -4 %
  cpu.c = {"m", spec, DType::kBFloat16, 0};
  cpu.predicted_prefill_s = cpu.measured_prefill_s = 1;
  cpu.predicted_decode_s = 0.096;
  cpu.measured_decode_s = 0.100;
  RuntimeRow kept = cpu;  // +2 %, glibc keeping: no page fresh
  kept.c = {"m", spec, DType::kBFloat16, 6, /*keep_freed=*/true};
  kept.predicted_decode_s = 0.51;
  kept.measured_decode_s = 0.50;
  kept.measured_faults = 2000;
  RuntimeRow heap = cpu;  // glibc as it comes: predicted at the fit's share, +50 % here
  heap.c = {"m", spec, DType::kBFloat16, 6};
  heap.predicted_decode_s = 1.2;
  heap.measured_decode_s = 0.8;
  heap.predicted_decode_low_s = 0.55;
  heap.predicted_decode_high_s = 1.3;
  heap.measured_faults = 32000;
  heap.measured_fresh_pages = 30000;  // over the kept twin's
  heap.predicted_at_fresh_s = 0.84;   // +5 %
  RuntimeRow outside = heap;          // measured under the range, beyond the slack
  outside.measured_decode_s = 0.45;
  outside.predicted_at_fresh_s = 0.45 * 0.9;  // -10 %
  v.rows = {cpu, kept, heap, outside};
  summarize_runtime(v);
  CHECK(kept.c.placement() == "disk 6/22 layers, glibc keeping freed memory");
  CHECK(heap.c.placement() == "disk 6/22 layers");
  CHECK(v.held_out == 4);
  // The rows glibc's heap does not decide: CPU-only and kept.
  CHECK(v.fixed_rows == 2);
  CHECK(v.fixed_decode_median_abs == Approx((0.04 + 0.02) / 2));
  CHECK(v.heap_rows == 2);
  CHECK(v.rows[2].in_range());
  CHECK_FALSE(v.rows[3].in_range());
  CHECK(v.heap_in_range == 1);
  CHECK(v.at_fresh_decode_median_abs == Approx((0.05 + 0.10) / 2));
  // Within the slack the range still holds: 10 % under its low end.
  RuntimeRow edge = heap;
  edge.measured_decode_s = 0.55 * 0.91;
  CHECK(edge.in_range());
  const std::string md = runtime_validation_markdown(v, "m", "c.yaml");
  CHECK_THAT(md, Catch::Contains("| 550 .. 1300 (in) |") && Catch::Contains("| 550 .. 1300 (out) |"));
  CHECK_THAT(md, Catch::Contains("/ 30000 (32000) |") && Catch::Contains("| 840, +5 % |"));
  CHECK_THAT(md, Catch::Contains("the 2 rows glibc's heap does not decide") &&
                     Catch::Contains("| the same rows measured within their predicted range | 1 of 2 |") &&
                     Catch::Contains("MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736"));
  // CPU-only rows only: no disk columns, no disk lines.
  v.rows = {cpu};
  summarize_runtime(v);
  CHECK(v.heap_rows == 0);
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"), !Catch::Contains("glibc's heap does not decide"));
}

TEST_CASE("the runtime validation refers its measurements to calibration time by the reference probe",
          "[unit][profile][runtime]") {
  RuntimeValidation v;
  v.new_tokens = 5;
  RuntimeRow slow;  // the machine 10 % slower than at calibration: measured 10 % over the prediction
  slow.predicted_prefill_s = slow.measured_prefill_s = 1;
  slow.predicted_decode_s = 0.100;
  slow.measured_decode_s = 0.110;
  slow.probe_ratio = 1.10;
  RuntimeRow steady = slow;  // within ±3 %: its raw error counts toward the targets
  steady.measured_decode_s = 0.104;
  steady.probe_ratio = 1.02;
  RuntimeRow fast = slow;  // 5 % faster machine, measured 5 % under
  fast.measured_decode_s = 0.095;
  fast.probe_ratio = 0.95;
  v.rows = {slow, steady, fast};
  summarize_runtime(v);
  CHECK(v.rows[0].decode_error() == Approx(0.1 / 0.11 - 1));
  CHECK(v.rows[0].scaled_decode_error() == Approx(0.0).margin(1e-12));
  CHECK(v.rows[2].scaled_decode_error() == Approx(0.0).margin(1e-12));
  CHECK(v.rows[1].scaled_decode_error() == Approx(0.1 / (0.104 / 1.02) - 1));
  CHECK_FALSE(v.rows[0].steady());
  CHECK(v.rows[1].steady());
  CHECK_FALSE(v.rows[2].steady());
  CHECK(v.steady_rows == 1);
  CHECK(v.steady_decode_median_abs == Approx(std::abs(0.1 / 0.104 - 1)));
  CHECK(v.scaled_decode_median_abs == Approx(0.0).margin(1e-12));  // two of the three exact once scaled
  CHECK(v.decode_median_abs > 0.03);
  v.probed = true;
  const std::string md = runtime_validation_markdown(v, "test machine", "cal.yaml");
  CHECK_THAT(md, Catch::Contains("| 1.100 |") && Catch::Contains("| 0.950 |"));  // each row's probe ratio
  v.rows[0].dmap.predicted_decode_s = 0.05;
  v.rows[0].dmap.measured_decode_s = 0.06;
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"), Catch::Contains("| 50 / 60 |"));
  CHECK_THAT(md, Catch::Contains("the 1 of 3 rows measured within ±3 % of calibration time"));
  CHECK_THAT(md, !Catch::Contains("was taken again"));
  v.extra_rounds = 2;
  v.extra_measurements = 1;
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"),
             Catch::Contains("taken again, up to 2 times") && Catch::Contains("measurements taken again: 1;"));
  // llama.cpp: the load mode of each dtype as measured.
  v.runtime = sim::Runtime::kLlamaCpp;
  v.no_mmap = {{DType::kFloat32, false}, {DType::kBFloat16, false}};
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"), Catch::Contains(", mapped (llama.cpp's default load)"));
  v.no_mmap = {{DType::kFloat32, true}, {DType::kBFloat16, false}, {DType::kFloat16, false}};
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"),
             Catch::Contains(", float32 read into memory (--no-mmap") &&
                 Catch::Contains("float16 and bfloat16 mapped (llama.cpp's default load"));
  v.no_mmap = {{DType::kFloat32, true}};
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"), Catch::Contains(", every dtype read into memory"));
}

TEST_CASE("a runtime's fit refers its decode to calibration time by the reference probe", "[unit][profile][runtime]") {
  // Not probed: the measurement runs once, as measured.
  ReferenceBracket none(0.0, 1);
  int calls = 0;
  CHECK(none.run([&] { return ++calls; }) == 1);
  CHECK(none.ratio() == 0);
  CHECK(none.ratios().empty());
  CHECK(at_calibration_time(0.2, none.ratio()) == 0.2);
  // Probed against a calibration time of this machine's own probe now: one ratio per measurement,
  // each the mean of the probes around it over that time (no wait: tries 0).
  const double now = reference_probe_ms(1);
  ReferenceBracket b(now, 1, 0, 0.0);
  b.run([] { return 0; });
  b.run([] { return 0; });
  REQUIRE(b.ratios().size() == 2);
  CHECK(b.ratio() == b.ratios().back());
  CHECK(b.ratio() > 0.2);
  CHECK(b.ratio() < 5.0);
  // A session measured with the machine 10 % slower: its decode steps, loop and one-row products
  // shrink by 1.1, its copies' rate grows by it; prefill and the tiny model stay as measured.
  TorchProbe p;
  TorchRun r;
  r.prefill_s = {1.0};
  r.decode_s = {0.110, 0.121};
  r.loop_s = {0.0011};
  r.tiny_decode_s = {0.002};
  r.matvec = {{1024, 1024, 0.00055}};
  p.runs = {r};
  p.offload_rates = TorchProbe::OffloadRates{10.0, 0.33};
  refer_to_calibration_time(p, 1.1);
  CHECK(p.runs[0].decode_s[0] == Approx(0.100));
  CHECK(p.runs[0].decode_s[1] == Approx(0.110));
  CHECK(p.runs[0].loop_s[0] == Approx(0.001));
  CHECK(p.runs[0].matvec[0].seconds == Approx(0.0005));
  CHECK(p.runs[0].prefill_s[0] == 1.0);
  CHECK(p.runs[0].tiny_decode_s[0] == 0.002);
  CHECK(p.offload_rates->copy_gbs == Approx(11.0));
  CHECK(p.offload_rates->fresh_page_us == Approx(0.3));
  TorchProbe q = p;
  refer_to_calibration_time(q, 0.0);  // not probed: unchanged
  CHECK(q.runs[0].decode_s == p.runs[0].decode_s);
}

TEST_CASE("the calibration refers a CPU-only run's decode, not its prefill, by its probes' ratio", "[unit][profile]") {
  PlacementRun r;
  r.prefill_s = 0.9;
  r.decode_s = {0.120, 0.132};
  r.decode_token_s = 0.126;
  r.modules = {{"lm_head", 0.05, {0.006, 0.0066}}};
  r.decode_weight_s = {{"model.layers.0.mlp.up_proj.weight", 0.0012}};
  r.decode_disk_read_s = 0.003;
  // Its decode bracketed by probes reading 1.2x the reference time: the machine 20 % slower.
  PlacementRun q = r;
  refer_decode(q, 1.2);
  CHECK(q.decode_token_s == Approx(0.105));
  CHECK(q.decode_s[0] == Approx(0.100));
  CHECK(q.decode_s[1] == Approx(0.110));
  CHECK(q.modules[0].decode_s[1] == Approx(0.0055));
  CHECK(q.decode_weight_s.at("model.layers.0.mlp.up_proj.weight") == Approx(0.001));
  CHECK(q.prefill_s == 0.9);
  CHECK(q.modules[0].prefill_s == 0.05);
  CHECK(q.decode_disk_read_s == 0.003);  // the page-cache probe's business
  // Synthetic runs of one machine at three states (decode proportional to the probe): referred,
  // they agree, and their median is the decode at the reference time.
  std::vector<double> referred;
  for (double ratio : {0.85, 1.0, 1.3}) {
    PlacementRun x;
    x.decode_token_s = 0.1 * ratio;
    refer_decode(x, ratio);
    referred.push_back(x.decode_token_s);
  }
  CHECK(referred[0] == Approx(0.1));
  CHECK(referred[2] == Approx(0.1));
  PlacementRun u = r;
  refer_decode(u, 0.0);  // not probed: unchanged
  CHECK(u.decode_token_s == r.decode_token_s);
}

TEST_CASE("run_placement calls the decode's bracket just around the decode, outside its timed steps",
          "[unit][profile]") {
  const ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json");
  RunSettings rs;
  rs.prompt = 8;
  rs.new_tokens = 4;
  rs.prefill_reps = 1;
  std::vector<std::string> calls;
  rs.before_decode = [&] {
    calls.push_back("before");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  };
  rs.after_decode = [&] {
    calls.push_back("after");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  };
  const PlacementRun r = run_placement(spec, DType::kFloat32, layers_on_disk_map(spec, 0), rs);
  CHECK(calls == std::vector<std::string>{"before", "after"});
  REQUIRE(r.decode_s.size() == 3);
  // A decode step of this 2-layer model takes well under a millisecond; 300 ms in any step would be the hook.
  for (double s : r.decode_s) CHECK(s < 0.15);
  CHECK(r.prefill_s < 0.15);
}

TEST_CASE("a probe program ends with the profiler that started it", "[unit][profile]") {
  namespace fs = std::filesystem;
  const fs::path pidfile = fs::temp_directory_path() / ("dmap_probe_pid_" + std::to_string(::getpid()));
  fs::remove(pidfile);
  const pid_t profiler = ::fork();
  REQUIRE(profiler >= 0);
  if (profiler == 0) {  // a profiler running a long probe
    run_command({"/bin/sh", "-c", "echo $$ > " + pidfile.string() + "; exec sleep 30"}, true);
    ::_exit(0);
  }
  pid_t probe = 0;
  for (int i = 0; i < 200 && probe == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(pidfile);
    if (!(in >> probe)) probe = 0;
  }
  REQUIRE(probe > 0);
  CHECK(::kill(probe, 0) == 0);  // running
  ::kill(profiler, SIGKILL);     // the profiler killed: no chance to clean up
  int status = 0;
  ::waitpid(profiler, &status, 0);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    gone = ::kill(probe, 0) != 0;  // (reaped by init once it ends)
  }
  CHECK(gone);
  if (!gone) ::kill(probe, SIGKILL);
  fs::remove(pidfile);
}

namespace {
// The runtime probe on the executor's tiny llama fixture: both dtypes, one thread, a prompt of 8,
// 3 new tokens.
TorchProbeOptions tiny_probe_options() {
  TorchProbeOptions po;
  po.script = std::string(DMAP_SOURCE_DIR) + "/scripts/runtime_probe.py";
  po.python = find_torch_python();
  po.model_file = std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json";
  po.dtypes = {DType::kFloat32, DType::kBFloat16};
  po.run.threads = 1;
  po.run.prompt = 8;
  po.run.new_tokens = 3;
  return po;
}
}  // namespace

TEST_CASE("the transformers probe's dtype check: what PyTorch cannot compute in on this CPU, and why",
          "[unit][profile][runtime]") {
  const TorchDtypeSupport s = parse_torch_dtype_support(
      R"({"torch": "1.13.0a0", "unsupported": {"float16": "\"addmm_impl_cpu_\" not implemented for 'Half'"}})",
      "c.json");
  CHECK(s.torch_version == "1.13.0a0");
  REQUIRE(s.unsupported.size() == 1);
  CHECK(s.unsupported.at(DType::kFloat16) == "\"addmm_impl_cpu_\" not implemented for 'Half'");
  CHECK(parse_torch_dtype_support(R"({"torch": "2.5", "unsupported": {}})", "c.json").unsupported.empty());
  CHECK_THROWS_WITH(parse_torch_dtype_support(R"({"torch": "2.5"})", "c.json"), Catch::Contains("c.json"));
  CHECK_THROWS_WITH(parse_torch_dtype_support(R"({"torch": "2.5", "unsupported": {"float17": "x"}})", "c.json"),
                    Catch::Contains("'float17' is not a dtype"));
  // This machine's PyTorch: float32 and bfloat16 always compute (the runtime's fits use them);
  // float16 is listed with PyTorch's own error where it does not (Debian 12's torch 1.13).
  TorchProbeOptions po = tiny_probe_options();
  po.dtypes = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};
  const TorchDtypeSupport here = torch_dtype_support(po);
  CHECK_FALSE(here.torch_version.empty());
  CHECK(here.unsupported.count(DType::kFloat32) == 0);
  CHECK(here.unsupported.count(DType::kBFloat16) == 0);
  if (const auto it = here.unsupported.find(DType::kFloat16); it != here.unsupported.end()) {
    CHECK_THAT(it->second, Catch::Contains("Half"));
  }
}

TEST_CASE("the transformers runtime probe offloads layers to disk as accelerate does, and cleans up",
          "[unit][profile][runtime][slow]") {
  namespace fs = std::filesystem;
  const fs::path scratch = fs::temp_directory_path() / ("dmap_offload_test_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  TorchProbeOptions po = tiny_probe_options();
  po.run.scratch_dir = scratch.string();
  po.reps = 1;
  po.disk_layers = 1;
  const TorchProbe p = run_torch_probe(po);
  CHECK_THAT(p.implementation, Catch::Contains("the last 1 layers offloaded to disk as accelerate offloads them"));
  REQUIRE(p.runs.size() == 2);
  for (const TorchRun& r : p.runs) {
    CHECK(r.prefill() > 0);
    CHECK(r.decode() > 0);
    CHECK(r.decode_faults.size() == 1);
  }
  // Its copies timed apart: a fresh page costs something (zeroed, faulted) and the copy a rate.
  REQUIRE(p.offload_rates);
  CHECK(p.offload_rates->copy_gbs > 0.05);
  CHECK(p.offload_rates->fresh_page_us > 0);
  CHECK(fs::is_empty(scratch));  // the offload folder and the JSON removed
  CHECK_FALSE(p.keep_freed);
  // With glibc keeping what it frees: the settings reach the probe's environment.
  po.keep_freed = true;
  po.dtypes = {DType::kFloat32};
  const TorchProbe kept = run_torch_probe(po);
  CHECK(kept.keep_freed);
  REQUIRE(kept.runs.size() == 1);
  CHECK(kept.runs[0].decode() > 0);
  CHECK(kept.runs[0].prefill_faults.size() == 1);
  CHECK(fs::is_empty(scratch));
  po.disk_layers = 99;  // more layers than the model has: the probe refuses
  CHECK_THROWS_WITH(run_torch_probe(po), Catch::Contains("failed"));
  CHECK(fs::is_empty(scratch));
  fs::remove_all(scratch);
  RuntimeCase c{"m", resolve_model("tinyllama_1b", "", std::string(DMAP_SOURCE_DIR) + "/configs/models"),
                DType::kFloat32, 0};
  CHECK(c.placement() == "cpu");
  c.disk_layers = 5;
  CHECK(c.placement() == "disk 5/22 layers");
}

TEST_CASE("the transformers validation runs a disk-offloaded placement end to end", "[unit][profile][runtime][slow]") {
  // A tiny llama (the executor's fixture) CPU-only and with its last layer on disk, under the
  // committed calibration's transformers profile: predicted, run by the probe and by dmap's executor.
  const std::string src = DMAP_SOURCE_DIR;
  const ModelSpec spec = resolve_model(src + "/tests/data/llama_float32", "", src + "/configs/models");
  const sim::Calibration cal = sim::load_calibration(src + "/configs/calibrations/amd_epyc_2cpu_avx512.yaml");
  const sim::Hardware hw = sim::parse_hardware(YAML::Node("cloud_xeon_2vcpu_vm"), "test", src + "/configs/hardware");
  TorchProbeOptions po = tiny_probe_options();  // the cases give the model and dtype
  LoadGuardSettings guard;
  guard.enabled = false;
  const int64_t layers = exec::exec_config(spec).layers;
  const std::vector<RuntimeCase> cases = {{"tiny", spec, DType::kFloat32, 0}, {"tiny", spec, DType::kFloat32, 1}};
  const RuntimeValidation v = validate_torch(cases, hw, cal, po, 1, 0, guard);
  REQUIRE(v.rows.size() == 2);
  CHECK(v.rows[1].c.placement() == "disk 1/" + std::to_string(layers) + " layers");
  for (const RuntimeRow& r : v.rows) {
    CHECK(r.measured_prefill_s > 0);
    CHECK(r.measured_decode_s > 0);
    CHECK(r.predicted_decode_s > 0);
    CHECK(r.dmap.measured_decode_s > 0);
  }
  // The disk row predicts the layer's reads on top of the CPU-only row.
  CHECK(v.rows[1].predicted_decode_s > v.rows[0].predicted_decode_s);
  CHECK_THAT(runtime_validation_markdown(v, "m", "c.yaml"),
             Catch::Contains("| disk 1/" + std::to_string(layers) + " layers |") &&
                 Catch::Contains("offloaded to disk as accelerate offloads them"));
}

TEST_CASE("the transformers runtime probe runs a tiny model with this machine's torch",
          "[unit][profile][runtime][slow]") {
  // CI installs Debian's python3-torch (scripts/setup.sh): a missing torch fails here.
  TorchProbeOptions po = tiny_probe_options();
  po.reps = 2;
  po.matvec = {{64, 64}, {128, 64}, {64, 128}};  // PyTorch's one-row products at these shapes
  const TorchProbe p = run_torch_probe(po);
  CHECK(p.model_type == "llama");
  CHECK(p.prompt == 8);
  REQUIRE(p.runs.size() == 2);
  for (const TorchRun& r : p.runs) {
    CHECK(r.prefill_s.size() == 2);
    CHECK(r.prefill() > 0);
    CHECK(r.decode() > 0);
    CHECK(r.tiny_decode() > 0);
    REQUIRE(r.matvec.size() == 3);
    CHECK(r.matvec[1].n == 128);
    CHECK(r.matvec[2].k == 128);
    for (const auto& m : r.matvec) CHECK(m.seconds > 0);
  }
  CHECK(p.runs[1].dtype == DType::kBFloat16);
  po.model_file = std::string(DMAP_SOURCE_DIR) + "/tests/data/no_such_model.json";
  CHECK_THROWS_WITH(run_torch_probe(po), Catch::Contains("runtime probe") && Catch::Contains("failed"));
}

TEST_CASE("MoE validation placements: routed experts alone on disk, the cost model's touched experts",
          "[unit][profile][moe]") {
  // The tiny qwen3_moe fixture: 2 layers, layer 1 dense (mlp_only_layers), 8 experts, 2 per token.
  const ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/qwen3_moe_float32/config.json");
  const DeviceMap dm = experts_on_disk_map(spec, 1);
  std::vector<std::string> on_disk;
  for (const auto& [name, d] : dm.items()) {
    if (d.kind == Device::Kind::kDisk) on_disk.push_back(name);
  }
  CHECK(on_disk == std::vector<std::string>{"model.layers.0.mlp.experts"});
  CHECK(dm.items().size() == layers_on_disk_map(spec, 0).items().size() + 1);
  CHECK_THROWS(experts_on_disk_map(spec, 2));  // one sparse layer only
  CHECK(predicted_touched_experts(spec, nullptr, 4) == Approx(8 * (1 - std::pow(0.75, 4))));
  sim::Calibration skewed;
  skewed.moe_routing_spread = 0.5;
  CHECK(predicted_touched_experts(spec, &skewed, 4) == Approx(4 * (1 - std::pow(0.5, 4))));
  // Two sequences of two tokens whose tokens route alike (q = 0.5: within 4 of the 8 experts).
  skewed.moe_routing_spread = std::nullopt;
  skewed.moe_sequence_spread = 0.5;
  const double one = 0.5 * (1 - std::pow(1 - 2.0 / 4, 2));  // one sequence's share of the 8
  CHECK(predicted_touched_experts(spec, &skewed, 4, 2) == Approx(8 * (1 - std::pow(1 - one, 2))));
  CHECK(predicted_touched_experts(spec, &skewed, 4, 4) == Approx(8 * (1 - std::pow(0.75, 4))));  // decode
  CHECK(predicted_touched_experts(
            load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/llama_float32/config.json"), nullptr, 4) == 0);
  // A validation case names it and runs it at its batch.
  ValidationCase c{"moe", spec, DType::kFloat32, 1, std::nullopt, "cpu", exec::Semantics::kAccelerate, "experts"};
  c.experts_only = true;
  CHECK(c.device_map().items().size() == dm.items().size());
}

TEST_CASE("the MoE validation measures routing figures on prompts of its own and predicts with them",
          "[unit][profile][moe]") {
  const ModelSpec spec = load_model_spec(std::string(DMAP_SOURCE_DIR) + "/tests/data/qwen3_moe_float32/config.json");
  ValidationCase c{"moe", spec, DType::kFloat32, 0, std::nullopt, "cpu", exec::Semantics::kAccelerate, "cpu"};
  c.batch = 2;
  RunSettings rs;
  rs.prompt = 16;
  rs.new_tokens = 3;
  rs.prefill_reps = 1;
  const RoutingFit f = probe_routing(c, rs);
  CHECK(f.source == "probe");
  CHECK(f.decode_sequences == Approx(4));
  CHECK(f.prefill_tokens == Approx(16));
  // 8 experts, 2 per token: the figures lie in [k/E, 1] and reproduce the counts unless clamped.
  CHECK(f.spread >= 0.25);
  CHECK(f.spread <= 1);
  CHECK(f.sequence_spread >= 0.25);
  CHECK(f.sequence_spread <= 1);
  // Three counts (one sequence's prefill the mean of three prompts), both figures fitted to them:
  // no worse than uniform routing's, the error the report states.
  CHECK(f.prefill_prompts == 3);
  CHECK(f.batch_prefill_touched >= f.prefill_touched);
  CHECK(f.batch_prefill_touched <= 8);
  auto rms = [&](double s, double q) {
    const double e[] = {std::log(sim::touched_experts(8, 2, 4, 1, s, q) / f.decode_touched),
                        std::log(sim::touched_experts(8, 2, 1, 16, s, q) / f.prefill_touched),
                        std::log(sim::touched_experts(8, 2, 4, 16, s, q) / f.batch_prefill_touched)};
    return std::sqrt((e[0] * e[0] + e[1] * e[1] + e[2] * e[2]) / 3);
  };
  CHECK(f.rms_log_error == Approx(rms(f.spread, f.sequence_spread)).margin(1e-9));
  CHECK(f.rms_log_error <= rms(1, 1) + 1e-12);
  const sim::Hardware hw = sim::parse_hardware(YAML::Node("cloud_xeon_2vcpu_vm"), "test",
                                               std::string(DMAP_SOURCE_DIR) + "/configs/hardware");
  ValidationSettings vs;
  vs.rounds = 1;
  vs.retries = 0;
  vs.quiet.max_wait_s = 0;
  // No figures in the calibration: the validation probes (the same seeds: the same counts) and
  // predicts its rows' touched experts with them.
  const ValidationResult v = validate({c}, hw, sim::Calibration{}, rs, vs, nullptr);
  REQUIRE(v.routing.size() == 1);
  CHECK(v.routing[0].source == "probe");
  CHECK(v.routing[0].decode_touched == Approx(f.decode_touched));
  CHECK(v.routing[0].prefill_touched == Approx(f.prefill_touched));
  sim::Calibration fitted;
  fitted.moe_routing_spread = f.spread;
  fitted.moe_sequence_spread = f.sequence_spread;
  REQUIRE(v.rows.size() == 1);
  CHECK(v.rows[0].prefill_routed == Approx(32));
  CHECK(v.rows[0].predicted_prefill_touched == Approx(predicted_touched_experts(spec, &fitted, 32, 2)));
  CHECK(v.rows[0].predicted_decode_touched == Approx(predicted_touched_experts(spec, &fitted, 2, 2)));
  // Figures in the calibration are used as they are, without a probe.
  sim::Calibration given;
  given.moe_sequence_spread = 0.5;
  const ValidationResult w = validate({c}, hw, given, rs, vs, nullptr);
  REQUIRE(w.routing.size() == 1);
  CHECK(w.routing[0].source == "calibration");
  CHECK(w.routing[0].sequence_spread == 0.5);
  CHECK(w.routing[0].decode_sequences == 0);
  CHECK(w.rows[0].predicted_prefill_touched == Approx(predicted_touched_experts(spec, &given, 32, 2)));
}

TEST_CASE("the page cache by tensor size: each disk module against itself resident, in the same run",
          "[unit][profile]") {
  const ModelSpec spec = resolve_model("tinyllama_1b", "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  const ModuleTree tree = build_module_tree(spec);
  REQUIRE(cfg.layers == 22);
  // Synthetic module times: the last 7 layers on disk add 2.6 ms to attention and 14 ms to the
  // MLP per decode step (two repetitions; the second's disk layers 10 % slower).
  auto rep = [&](double slow) {
    PlacementRun r;
    for (int64_t l = 0; l < 22; ++l) {
      const bool disk = l >= 15;
      const std::string p = "model.layers." + std::to_string(l) + ".";
      r.modules.push_back({p + "input_layernorm", 0, {1e-5, 1e-5}});
      r.modules.push_back({p + "self_attn", 0, {1e-3 + (disk ? 2.6e-3 * slow : 0), 1e-3 + (disk ? 2.6e-3 * slow : 0)}});
      r.modules.push_back({p + "post_attention_layernorm", 0, {1e-5, 1e-5}});
      r.modules.push_back({p + "mlp", 0, {3e-3 + (disk ? 14e-3 * slow : 0), 3e-3 + (disk ? 14e-3 * slow : 0)}});
    }
    return r;
  };
  const std::vector<PlacementRun> reps = {rep(1.0), rep(1.1), rep(1.0)};
  const WarmSizes w = warm_by_tensor_size(tree, cfg, DType::kFloat32, reps, 7);
  // Attention: q, o 16 MiB and k, v 2 MiB (36 MiB, bytes-weighted mean 520 / 36 MiB); the MLP three
  // tensors of 44 MiB; the norms (8 KiB) say nothing and are left out.
  REQUIRE(w.points.size() == 2);
  CHECK(w.modules == std::vector<std::string>{"self_attn", "mlp"});
  CHECK(w.points[0].first == Approx(520.0 / 36));
  CHECK(w.points[0].second == Approx(36.0 * 1024 * 1024 / 2.6e-3));
  CHECK(w.points[1].first == Approx(44));
  CHECK(w.points[1].second == Approx(132.0 * 1024 * 1024 / 14e-3));
  CHECK(w.extra_s[1] == Approx(14e-3));
  // bfloat16: half the bytes at the same times.
  const WarmSizes b = warm_by_tensor_size(tree, cfg, DType::kBFloat16, reps, 7);
  REQUIRE(b.points.size() == 2);
  CHECK(b.points[1].first == Approx(22));
  CHECK(b.points[1].second == Approx(66.0 * 1024 * 1024 / 14e-3));
  // A module whose disk layers run no slower gives no point.
  std::vector<PlacementRun> flat = {rep(0.0)};
  CHECK(warm_by_tensor_size(tree, cfg, DType::kFloat32, flat, 7).points.empty());
}

TEST_CASE("the page cache by tensor: each disk layer weight's steps against themselves resident", "[unit][profile]") {
  const ModelSpec spec = resolve_model("tinyllama_1b", "", std::string(DMAP_SOURCE_DIR) + "/configs/models");
  const exec::ExecConfig cfg = exec::exec_config(spec);
  REQUIRE(cfg.layers == 22);
  // Synthetic step times per decode step: the last 7 layers on disk add to each weight's steps
  // q 1.2, k 0.2, v 0.1, o 0.4, gate 1.5, up 1.0, down 1.1 ms (float32: q, o 16 MiB, k, v 2 MiB,
  // gate, up, down 44 MiB); the norms' gains (8 KiB) add 0.05 ms and are left out. The second
  // repetition's disk layers 10 % slower, its resident ones 20 % (the median of three is the first's).
  const std::map<std::string, double> extra = {{"self_attn.q_proj.weight", 1.2e-3}, {"self_attn.k_proj.weight", 0.2e-3},
                                               {"self_attn.v_proj.weight", 0.1e-3}, {"self_attn.o_proj.weight", 0.4e-3},
                                               {"mlp.gate_proj.weight", 1.5e-3},    {"mlp.up_proj.weight", 1.0e-3},
                                               {"mlp.down_proj.weight", 1.1e-3},    {"input_layernorm.weight", 5e-5}};
  auto rep = [&](double slow, double state) {
    PlacementRun r;
    for (int64_t l = 0; l < 22; ++l) {
      const bool disk = l >= 15;
      for (const auto& [kind, e] : extra) {
        r.decode_weight_s["model.layers." + std::to_string(l) + "." + kind] =
            1e-3 * (disk ? 1.0 : state) + (disk ? e * slow : 0.0) + 1e-6 * static_cast<double>(l % 3);
      }
    }
    return r;
  };
  const std::vector<PlacementRun> reps = {rep(1.0, 1.0), rep(1.1, 1.2), rep(1.0, 1.0)};
  const double MiB = 1024.0 * 1024.0;
  const WarmSizes w = warm_by_tensor(cfg, DType::kFloat32, reps, 7);
  REQUIRE(w.points.size() == 3);
  CHECK(w.modules[0] == "self_attn.k_proj.weight+self_attn.v_proj.weight");
  CHECK(w.points[0].first == Approx(2));
  CHECK(w.extra_s[0] == Approx(0.3e-3).epsilon(0.02));
  CHECK(w.points[0].second == Approx(4 * MiB / 0.3e-3).epsilon(0.02));
  CHECK(w.modules[1] == "self_attn.q_proj.weight+self_attn.o_proj.weight");
  CHECK(w.points[1].first == Approx(16));
  CHECK(w.points[1].second == Approx(32 * MiB / 1.6e-3).epsilon(0.02));
  CHECK(w.points[2].first == Approx(44));
  CHECK(w.points[2].second == Approx(132 * MiB / 3.6e-3).epsilon(0.02));
  // bfloat16: half the bytes at the same times.
  const WarmSizes b = warm_by_tensor(cfg, DType::kBFloat16, reps, 7);
  REQUIRE(b.points.size() == 3);
  CHECK(b.points[2].first == Approx(22));
  CHECK(b.points[2].second == Approx(66 * MiB / 3.6e-3).epsilon(0.02));
  // A kind whose disk layers run no slower gives no point; runs without step times give none.
  std::vector<PlacementRun> flat = {rep(0.0, 1.0)};
  CHECK(warm_by_tensor(cfg, DType::kFloat32, flat, 7).points.empty());
  CHECK(warm_by_tensor(cfg, DType::kFloat32, {PlacementRun{}}, 7).points.empty());
}

TEST_CASE("the machine's state of a disk run against its CPU-only partner, from the modules resident in both",
          "[unit][profile]") {
  // Synthetic runs of a 4-layer model, layers 2 and 3 on disk in the disk run; the disk run meets the
  // machine 25 % slower (every resident module 1.25x), and its disk layers add 10 ms each.
  auto run = [](double state, bool disk) {
    PlacementRun r;
    r.modules.push_back({"model.embed_tokens", 0, {1e-5 * state}});
    for (int l = 0; l < 4; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      const double extra = disk && l >= 2 ? 10e-3 : 0.0;
      r.modules.push_back({p, 0, {0.0}});
      r.modules.push_back({p + ".self_attn", 0, {2e-3 * state + extra / 2, 9.0, 2e-3 * state + extra / 2}});
      r.modules.push_back({p + ".mlp", 0, {6e-3 * state + extra / 2}});
    }
    r.modules.push_back({"model.norm", 0, {1e-5 * state}});
    r.modules.push_back({"lm_head", 0, {3e-3 * state}});
    return r;
  };
  CHECK(resident_ratio(run(1.0, false), run(1.25, true), 2) == Approx(1.25));
  CHECK(resident_ratio(run(1.0, false), run(1.0, true), 2) == Approx(1.0));
  // The disk layers' own extra does not leak into it (layer 2's prefix is not layer 20's).
  CHECK(resident_ratio(run(0.8, false), run(1.0, true), 2) == Approx(1.25));
  // "model.layers.1x" is not layer 1: layer 12 of a longer model counts as on disk from layer 2 on.
  PlacementRun a = run(1.0, false), b = run(1.0, true);
  a.modules.push_back({"model.layers.12.mlp", 0, {1e-3}});
  b.modules.push_back({"model.layers.12.mlp", 0, {50e-3}});
  CHECK(resident_ratio(a, b, 2) == Approx(1.0));
  // Nothing shared: 1.
  CHECK(resident_ratio(PlacementRun{}, run(1.0, true), 2) == 1.0);
}
