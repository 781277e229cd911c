// The transformers runtime probe and its fit (see runtime_probe.h).
#include "profile/runtime_probe.h"

#include "profile/reference_bracket.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/interrupt.h"
#include "core/module_tree.h"
#include "core/stats.h"
#include "core/yaml_io.h"
#include "exec/config.h"
#include "profile/fit.h"
#include "profile/probes.h"
#include "profile/runtime_fit.h"
#include "profile/subprocess.h"

namespace dmap::profile {

double TorchRun::prefill() const { return median(prefill_s); }
double TorchRun::decode() const {
  std::vector<double> steps;
  for (size_t i = 0; i < decode_s.size(); ++i) steps.push_back(decode_s[i] + (i < loop_s.size() ? loop_s[i] : 0.0));
  return median(steps);
}
double TorchRun::loop() const { return loop_s.empty() ? 0.0 : median(loop_s); }
double TorchRun::tiny_decode() const { return median(tiny_decode_s); }

TorchProbe parse_torch_probe(const std::string& json, const std::string& origin) {
  const YAML::Node root = load_yaml_string(json, origin);
  if (!root.IsMap()) fail_at(origin, root, "the runtime probe's output must be a JSON object");
  TorchProbe p;
  auto need = [&](const YAML::Node& m, const char* key) {
    const YAML::Node n = m[key];
    if (!n.IsDefined()) fail_at(origin, m, std::string("the runtime probe's output lacks '") + key + "'");
    return n;
  };
  p.torch_version = yaml_string(origin, need(root, "torch"), "torch");
  p.implementation = yaml_string(origin, need(root, "implementation"), "implementation");
  p.model_type = yaml_string(origin, need(root, "model_type"), "model_type");
  p.threads = static_cast<int>(yaml_int(origin, need(root, "threads"), "threads"));
  p.prompt = yaml_int(origin, need(root, "prompt"), "prompt");
  p.new_tokens = yaml_int(origin, need(root, "new_tokens"), "new_tokens");
  if (root["disk_layers"].IsDefined()) p.disk_layers = yaml_int(origin, root["disk_layers"], "disk_layers");
  if (p.disk_layers < 0) fail_at(origin, root["disk_layers"], "disk_layers must not be negative");
  if (root["glibc_keeps_freed"].IsDefined())
    p.keep_freed = yaml_bool(origin, root["glibc_keeps_freed"], "glibc_keeps_freed");
  if (const YAML::Node o = root["offload_rates"]; o.IsDefined()) {
    if (!o.IsMap()) fail_at(origin, o, "offload_rates: expected an object");
    TorchProbe::OffloadRates r;
    r.copy_gbs = yaml_double(origin, need(o, "copy_gbs"), "offload_rates.copy_gbs");
    r.fresh_page_us = yaml_double(origin, need(o, "fresh_page_us"), "offload_rates.fresh_page_us");
    if (!(r.copy_gbs > 0 && r.copy_gbs < 1e4)) fail_at(origin, o["copy_gbs"], "offload_rates.copy_gbs: a rate in GB/s");
    if (!(r.fresh_page_us >= 0 && r.fresh_page_us < 1e6))
      fail_at(origin, o["fresh_page_us"], "offload_rates.fresh_page_us: microseconds per page");
    p.offload_rates = r;
  }
  const YAML::Node runs = need(root, "runs");
  if (!runs.IsSequence() || runs.size() == 0) fail_at(origin, runs, "runs: expected a non-empty list");
  auto seconds = [&](const YAML::Node& m, const char* key) {
    const YAML::Node n = need(m, key);
    if (!n.IsSequence() || n.size() == 0) fail_at(origin, n, std::string(key) + ": expected a non-empty list");
    std::vector<double> v;
    for (const auto& x : n) {
      const double s = yaml_double(origin, x, key);
      if (!(s > 0 && s < 1e5)) fail_at(origin, x, std::string(key) + ": a time in seconds, found " + x.Scalar());
      v.push_back(s);
    }
    return v;
  };
  for (const auto& r : runs) {
    if (!r.IsMap()) fail_at(origin, r, "runs: expected objects");
    TorchRun t;
    const std::string d = yaml_string(origin, need(r, "dtype"), "dtype");
    const auto dt = parse_dtype(d);
    if (!dt) fail_at(origin, r["dtype"], "dtype: unknown '" + d + "'");
    t.dtype = *dt;
    t.prefill_s = seconds(r, "prefill_s");
    t.decode_s = seconds(r, "decode_token_s");
    t.loop_s = seconds(r, "loop_s");
    t.tiny_decode_s = seconds(r, "tiny_decode_token_s");
    auto counts = [&](const char* key, std::vector<double>& out) {
      const YAML::Node fl = r[key];
      if (!fl.IsDefined()) return;
      if (!fl.IsSequence()) fail_at(origin, fl, std::string(key) + ": expected a list");
      for (const auto& x : fl) {
        const double v = yaml_double(origin, x, key);
        if (!(v >= 0 && v < 1e12)) fail_at(origin, x, std::string(key) + ": a count, found " + x.Scalar());
        out.push_back(v);
      }
    };
    counts("decode_minor_faults", t.decode_faults);
    counts("prefill_minor_faults", t.prefill_faults);
    if (const YAML::Node mv = r["matvec"]; mv.IsDefined()) {
      if (!mv.IsSequence()) fail_at(origin, mv, "matvec: expected a list");
      for (const auto& x : mv) {
        if (!x.IsMap()) fail_at(origin, x, "matvec: expected objects {n, k, seconds}");
        MatvecSample m;
        m.n = yaml_int(origin, need(x, "n"), "n");
        m.k = yaml_int(origin, need(x, "k"), "k");
        m.seconds = yaml_double(origin, need(x, "seconds"), "seconds");
        if (m.n < 1 || m.k < 1) fail_at(origin, x, "matvec: a shape must be positive");
        if (!(m.seconds > 0 && m.seconds < 1e3)) fail_at(origin, x["seconds"], "matvec: a time in seconds");
        t.matvec.push_back(m);
      }
    }
    p.runs.push_back(std::move(t));
  }
  return p;
}

TorchProbe merge_torch_probes(const std::vector<TorchProbe>& sessions) {
  DMAP_CHECK(!sessions.empty(), "no runtime probe sessions to merge");
  TorchProbe out = sessions.front();
  for (size_t s = 1; s < sessions.size(); ++s) {
    const TorchProbe& p = sessions[s];
    DMAP_CHECK(p.runs.size() == out.runs.size() && p.threads == out.threads && p.prompt == out.prompt &&
                   p.new_tokens == out.new_tokens && p.disk_layers == out.disk_layers && p.keep_freed == out.keep_freed,
               "runtime probe sessions with different settings");
    for (size_t i = 0; i < p.runs.size(); ++i) {
      TorchRun& r = out.runs[i];
      const TorchRun& q = p.runs[i];
      DMAP_CHECK(q.dtype == r.dtype, "runtime probe sessions with different dtypes");
      for (auto [to, from] : {std::pair{&r.prefill_s, &q.prefill_s}, std::pair{&r.decode_s, &q.decode_s},
                              std::pair{&r.loop_s, &q.loop_s}, std::pair{&r.tiny_decode_s, &q.tiny_decode_s}}) {
        to->insert(to->end(), from->begin(), from->end());
      }
      if (r.matvec.empty()) r.matvec = q.matvec;
      r.decode_faults.insert(r.decode_faults.end(), q.decode_faults.begin(), q.decode_faults.end());
      r.prefill_faults.insert(r.prefill_faults.end(), q.prefill_faults.begin(), q.prefill_faults.end());
    }
  }
  // The disk probe's rates alone: each the median over the sessions that measured them.
  std::vector<double> copy, page;
  for (const TorchProbe& p : sessions) {
    if (!p.offload_rates) continue;
    copy.push_back(p.offload_rates->copy_gbs);
    page.push_back(p.offload_rates->fresh_page_us);
  }
  if (!copy.empty()) out.offload_rates = TorchProbe::OffloadRates{median(copy), median(page)};
  return out;
}

std::string find_torch_python() {
  std::vector<std::string> tried;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("DMAP_PYTHON"); env && *env) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const auto& c : candidates) {
    if (run_command({c, "-c", "import torch"}, true) == 0) return c;
    tried.push_back(c);
  }
  std::string list;
  for (const auto& t : tried) list += (list.empty() ? "" : ", ") + t;
  throw RuntimeFailure("the transformers runtime probe needs a python3 that imports torch; none of " + list +
                       " does (Debian: apt-get install python3-torch; or set DMAP_PYTHON)");
}

namespace {

// "float32,bfloat16": the probe's --dtypes argument.
std::string dtype_list(const std::vector<DType>& dtypes) {
  std::string s;
  for (DType d : dtypes) {
    if (!s.empty()) s += ',';
    s += dtype_name(d);
  }
  return s;
}

// Runs the probe program `argv`, which writes its JSON to `out`, and returns that text (the file
// removed either way); a failed run is a RuntimeFailure naming `what` and the exit status.
std::string run_probe_json(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                           const std::filesystem::path& out, const std::string& what) {
  const int rc = run_command(argv, false, env);
  std::error_code ec;
  if (rc != 0) {
    std::filesystem::remove(out, ec);
    throw RuntimeFailure(what + " failed with exit status " + std::to_string(rc));
  }
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(out, ec);
  return text.str();
}

}  // namespace

void refer_to_calibration_time(TorchProbe& p, double ratio) {
  if (ratio <= 0) return;
  for (TorchRun& r : p.runs) {
    for (double& s : r.decode_s) s = at_calibration_time(s, ratio);
    for (double& s : r.loop_s) s = at_calibration_time(s, ratio);
    for (MatvecSample& m : r.matvec) m.seconds = at_calibration_time(m.seconds, ratio);
  }
  if (p.offload_rates) {
    p.offload_rates->copy_gbs *= ratio;
    p.offload_rates->fresh_page_us = at_calibration_time(p.offload_rates->fresh_page_us, ratio);
  }
}

TorchProbe run_torch_probe(const TorchProbeOptions& opt) {
  namespace fs = std::filesystem;
  static std::atomic<int> serial{0};
  const fs::path dir = opt.run.scratch_dir.empty() ? fs::temp_directory_path() : fs::path(opt.run.scratch_dir);
  const fs::path out =
      dir / ("dmap_runtime_probe_" + std::to_string(::getpid()) + "_" + std::to_string(serial++) + ".json");
  const std::string dtypes = dtype_list(opt.dtypes);
  std::vector<std::string> argv = {opt.python,     opt.script,
                                   "--model",      opt.model_file,
                                   "--dtypes",     dtypes,
                                   "--threads",    std::to_string(opt.run.threads),
                                   "--prompt",     std::to_string(opt.run.prompt),
                                   "--new-tokens", std::to_string(opt.run.new_tokens),
                                   "--reps",       std::to_string(opt.reps),
                                   "--out",        out.string()};
  const fs::path offload =
      dir / ("dmap_runtime_offload_" + std::to_string(::getpid()) + "_" + std::to_string(serial++));
  const RemoveOnInterrupt offload_guard(offload.string());
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      if (!d.empty()) fs::remove_all(d, ec);
    }
  } cleanup{opt.disk_layers > 0 ? offload : fs::path()};
  if (opt.disk_layers > 0) {
    std::error_code ec;
    fs::create_directories(offload, ec);
    if (ec) throw RuntimeFailure("cannot create the offload folder " + offload.string() + ": " + ec.message());
    argv.insert(argv.end(), {"--disk-layers", std::to_string(opt.disk_layers), "--offload-dir", offload.string()});
  }
  if (!opt.matvec.empty()) {
    std::string shapes;
    for (const auto& [n, k] : opt.matvec) {
      shapes += (shapes.empty() ? "" : ",") + std::to_string(n) + ":" + std::to_string(k);
    }
    argv.push_back("--matvec");
    argv.push_back(shapes);
  }
  const std::string text = run_probe_json(
      argv, opt.keep_freed ? sim::glibc_keep_freed_env() : std::vector<std::string>{}, out,
      "the transformers runtime probe (" + opt.python + " " + opt.script + " --model " + opt.model_file + ")");
  return parse_torch_probe(text, "the runtime probe's output (" + out.string() + ")");
}

TorchDtypeSupport parse_torch_dtype_support(const std::string& json, const std::string& origin) {
  const YAML::Node root = load_yaml_string(json, origin);
  const char* shape = "the dtype check's output must be {\"torch\": version, \"unsupported\": {dtype: error}}";
  if (!root.IsMap()) fail_at(origin, root, shape);
  const YAML::Node torch = root["torch"], unsupported = root["unsupported"];
  if (!torch.IsDefined() || !unsupported.IsDefined() || !unsupported.IsMap()) fail_at(origin, root, shape);
  TorchDtypeSupport s;
  s.torch_version = yaml_string(origin, torch, "torch");
  for (const auto& e : unsupported) {
    const std::string name = yaml_string(origin, e.first, "unsupported");
    const auto d = parse_dtype(name);
    if (!d) fail_at(origin, e.first, "unsupported: '" + name + "' is not a dtype");
    s.unsupported[*d] = yaml_string(origin, e.second, "unsupported." + name);
  }
  return s;
}

TorchDtypeSupport torch_dtype_support(const TorchProbeOptions& opt) {
  namespace fs = std::filesystem;
  const fs::path dir = opt.run.scratch_dir.empty() ? fs::temp_directory_path() : fs::path(opt.run.scratch_dir);
  const fs::path out = dir / ("dmap_dtype_check_" + std::to_string(::getpid()) + ".json");
  const std::string dtypes = dtype_list(opt.dtypes);
  const std::string text =
      run_probe_json({opt.python, opt.script, "--check-dtypes", dtypes, "--out", out.string()}, {}, out,
                     "the transformers runtime probe's dtype check (" + opt.python + " " + opt.script +
                         " --check-dtypes " + dtypes + ")");
  return parse_torch_dtype_support(text, "the dtype check's output (" + out.string() + ")");
}

FreshPages fresh_pages_of(const ModuleTree& tree, DType d, int64_t first, int64_t last) {
  FreshPages f;
  for (double b : disk_tensor_bytes(tree, d, first, last)) {
    (b >= sim::kGlibcMmapThresholdMax ? f.mapped : f.heap) += std::ceil(b / sim::kPageBytes);
  }
  return f;
}

double fresh_seconds(const sim::RuntimeProfile& p, const FreshPages& pages, double measured) {
  const double heap_us = p.fresh_page_us.value_or(0.0), mapped_us = p.mapped_page_us.value_or(heap_us);
  const double mapped = std::min(std::max(0.0, measured), pages.mapped);
  return (mapped * mapped_us + std::max(0.0, measured - mapped) * heap_us) * 1e-6;
}

sim::RuntimeProfile keeping_freed(sim::RuntimeProfile p) {
  if (p.offload_copy_gbs) p.fresh_page_us = p.mapped_page_us = 0.0;
  return p;
}

double measured_fresh_pages(const TorchRun& run, const TorchRun& kept, bool prefill) {
  const std::vector<double>& a = prefill ? run.prefill_faults : run.decode_faults;
  const std::vector<double>& b = prefill ? kept.prefill_faults : kept.decode_faults;
  if (a.empty() || b.empty()) return -1;
  return std::max(0.0, median(a) - median(b));
}

namespace {

// A run's medians as the fit block records them.
YAML::Node run_node(const TorchRun& r) {
  YAML::Node m;
  m["decode_ms"] = round4(r.decode() * 1e3);
  m["prefill_ms"] = round4(r.prefill() * 1e3);
  m["repetitions"] = static_cast<int>(r.prefill_s.size());
  return m;
}

// A run of the probe against the fitted profile's prediction of it.
SelfCheckRow self_check_row(const TorchRun& r, const std::string& placement, const sim::Prediction& q) {
  return {r.dtype, placement, r.prefill(), q.prefill_s, r.decode(), q.decode_token_s};
}

// accelerate's disk offload (fit_torch_profile's doc in runtime_probe.h): the fresh pages from the
// default runs against the kept ones, then each dtype's copy scale, then the cold factors; into
// `cal`'s transformers profile, `f`'s summary and self-check. Returns the fit block's node.
YAML::Node fit_disk_offload(const ModelSpec& spec, const sim::Hardware& hw, sim::Calibration& cal,
                            const TorchProbe& probe, const TorchProbe& offload, const TorchProbe* kept_probe,
                            TorchFit& f) {
  sim::RuntimeProfile& p = cal.runtimes[sim::Runtime::kTransformers];
  if (!offload.offload_rates) {
    throw RuntimeFailure(
        "the transformers runtime probe ran with layers on disk but did not time its copies "
        "(offload_rates): is scripts/runtime_probe.py from this dmap?");
  }
  if (!kept_probe || kept_probe->disk_layers != offload.disk_layers || !kept_probe->keep_freed ||
      kept_probe->runs.size() != offload.runs.size()) {
    throw RuntimeFailure(
        "the transformers disk-offload fit needs a second run of the same placement with glibc keeping what it "
        "frees (glibc_keeps_freed in the probe's output)");
  }
  const TorchProbe& kept = *kept_probe;
  const TorchProbe::OffloadRates& rates = *offload.offload_rates;
  const int64_t layers = exec::exec_config(spec).layers;
  const DeviceMap disk_map = layers_on_disk_map(spec, offload.disk_layers);
  const std::string placement =
      "disk " + std::to_string(offload.disk_layers) + "/" + std::to_string(layers) + " layers";
  auto pred_disk = [&](DType d) {
    return predict(spec, d, disk_map, hw, &cal, probe.prompt, probe.new_tokens, sim::Semantics::kCpu,
                   sim::Runtime::kTransformers);
  };
  auto kept_run = [&](DType d) -> const TorchRun& {
    for (const auto& r : kept.runs)
      if (r.dtype == d) return r;
    throw RuntimeFailure("the glibc-keeping disk-offload run lacks " + std::string(dtype_name(d)));
  };
  p.offload_copy_gbs = round4(rates.copy_gbs);
  // 1. The fresh pages: each run's minor faults over the kept run's (the memory maps' own); their
  // share of the heap-served tensors' pages, pooled over dtypes; their time within a forward, the
  // runs' extra decode over the kept ones: mapped x a + heap x b, exact from two runs whose
  // tensors fall on either side of 32 MiB (least squares on relative errors from more), else one
  // figure for both (pooled).
  const ModuleTree tree = build_module_tree(spec);
  double fresh = 0, heap_fresh = 0, heap_pages = 0, extra_s = 0;
  std::map<DType, double> fresh_of;
  std::map<DType, FreshPages> pages_of;
  std::vector<std::array<double, 3>> rows;  // mapped pages, heap pages, extra seconds: one per run
  for (const auto& r : offload.runs) {
    const double m = measured_fresh_pages(r, kept_run(r.dtype));
    if (m < 0) {
      throw RuntimeFailure(
          "the transformers disk-offload runs did not record their page faults (decode_minor_faults): is "
          "scripts/runtime_probe.py from this dmap?");
    }
    const FreshPages pages = fresh_pages_of(tree, r.dtype, layers - offload.disk_layers, layers);
    fresh_of[r.dtype] = m;
    pages_of[r.dtype] = pages;
    const double mapped = std::min(m, pages.mapped), heap = m - mapped;
    fresh += m;
    heap_fresh += std::min(heap, pages.heap);
    heap_pages += pages.heap;
    const double extra = r.decode() - kept_run(r.dtype).decode();
    extra_s += extra;
    if (extra > 0) rows.push_back({mapped, heap, extra});
  }
  std::string how;
  if (fresh >= kMinFreshPages && extra_s > 0 && rows.size() >= 2) {
    // extra = mapped x a + heap x b (us), least squares on relative errors (profile/fit.h), where the
    // runs tell the two kinds of page apart (rank 2 once each row is scaled by its time).
    Eigen::MatrixXd A(static_cast<Eigen::Index>(rows.size()), 2);
    Eigen::VectorXd y(A.rows());
    for (Eigen::Index i = 0; i < A.rows(); ++i) {
      const auto& [mapped, heap, extra] = rows[static_cast<size_t>(i)];
      A(i, 0) = mapped * 1e-6;
      A(i, 1) = heap * 1e-6;
      y(i) = extra;
    }
    Eigen::MatrixXd scaled = A;  // rows over their times, columns to unit length
    for (Eigen::Index i = 0; i < A.rows(); ++i) scaled.row(i) /= y(i);
    for (Eigen::Index j = 0; j < 2; ++j) {
      if (const double n = scaled.col(j).norm(); n > 0) scaled.col(j) /= n;
    }
    Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(scaled);
    qr.setThreshold(1e-3);
    if (qr.rank() == 2) {
      const RobustFit ab = robust_fit(A, y);
      if (ab.coef(0) > 0 && ab.coef(1) > 0) {
        p.mapped_page_us = round4(ab.coef(0));
        p.fresh_page_us = round4(ab.coef(1));
        how =
            "timed within the forwards: the default runs' extra time over the kept ones, pages of blocks mapped "
            "afresh and of the heap apart";
      }
    }
  }
  if (how.empty() && fresh >= kMinFreshPages && extra_s > 0) {
    p.fresh_page_us = round4(extra_s / fresh * 1e6);
    p.mapped_page_us.reset();
    how = "timed within the forwards: the default runs' extra time over the kept ones, one figure for every page";
  } else if (how.empty()) {
    p.fresh_page_us = round4(rates.fresh_page_us);
    p.mapped_page_us.reset();
    how = fresh < kMinFreshPages ? "as timed alone (the runs touched too few fresh pages to time them)"
                                 : "as timed alone (the runs with fresh pages were not slower)";
  }
  p.heap_fresh_share = round4(heap_pages > 0 ? heap_fresh / heap_pages : 1.0);
  // 2. The copies within a forward, each dtype's: its default run exactly at the fresh pages it
  // measured (the kept run, another process, is predicted from it: below).
  auto pred_kept = [&](DType d) {  // glibc keeping what it frees: no page fresh
    sim::Calibration at_kept = cal;
    at_kept.runtimes[sim::Runtime::kTransformers] = keeping_freed(p);
    return predict(spec, d, disk_map, hw, &at_kept, probe.prompt, probe.new_tokens, sim::Semantics::kCpu,
                   sim::Runtime::kTransformers);
  };
  for (const auto& r : offload.runs) {
    double& scale = p.offload_copy_scale[r.dtype] = 1.0;
    const double own = fresh_seconds(p, pages_of[r.dtype], fresh_of[r.dtype]);
    double speed = 1.0;  // 1 / scale: the predicted decode falls as it rises
    solve_efficiency(
        speed,
        [&] {
          scale = 1.0 / speed;
          return pred_kept(r.dtype).decode_token_s + own;
        },
        r.decode());
    scale = round4(1.0 / speed);
  }
  YAML::Node off;
  off["disk_layers"] = offload.disk_layers;
  off["copy_alone_gbs"] = *p.offload_copy_gbs;
  off["fresh_page_alone_us"] = round4(rates.fresh_page_us);
  off["fresh_page_us"] = *p.fresh_page_us;
  if (p.mapped_page_us) off["mapped_page_us"] = *p.mapped_page_us;
  off["fresh_page_from"] = how;
  off["heap_fresh_share"] = *p.heap_fresh_share;
  {
    std::ostringstream s;
    s << std::setprecision(3) << "  accelerate's disk offload, " << placement << ": copies at " << *p.offload_copy_gbs
      << " GB/s alone, a fresh page " << *p.fresh_page_us << " us from the heap, "
      << p.mapped_page_us.value_or(*p.fresh_page_us) << " us mapped afresh (" << how << "; " << rates.fresh_page_us
      << " alone), " << *p.heap_fresh_share * 100
      << " % of the heap-served tensors' pages fresh in the fit's runs (their page faults)";
    f.summary.push_back(s.str());
  }
  // 3. The cold prefill: the copy out of a file not in the page cache over the warm copy, each
  // dtype's kept run exactly (no page fresh there: the prefill's copies are the copies alone).
  for (const auto& r : offload.runs) {
    double& cold = p.offload_cold_scale[r.dtype] = 1.0;
    double speed = 1.0;  // 1 / scale: the predicted prefill falls as it rises
    solve_efficiency(
        speed,
        [&] {
          cold = 1.0 / speed;
          return pred_kept(r.dtype).prefill_s;
        },
        kept_run(r.dtype).prefill());
    cold = round4(1.0 / speed);
  }
  // The default run's fresh pages in its prefill (glibc's heap as the prefill left it), where
  // recorded; else the decode's.
  auto prefill_fresh = [&](const TorchRun& r) {
    const double m = measured_fresh_pages(r, kept_run(r.dtype), /*prefill=*/true);
    return m >= 0 ? m : fresh_of[r.dtype];
  };
  for (const auto& r : offload.runs) {
    const TorchRun& k = kept_run(r.dtype);
    // Each process's run fits one phase exactly and is checked on it (a figure the solver could
    // not reach shows); its other phase comes from the other process's figure, reported, not
    // checked: between processes this VM drifts by 10-30 % (docs/PERFORMANCE.md).
    const sim::Prediction pk = pred_kept(r.dtype);
    sim::Prediction pf = pred_disk(r.dtype);
    const double pre_fresh = prefill_fresh(r);
    pf.decode_token_s = pk.decode_token_s + fresh_seconds(p, pages_of[r.dtype], fresh_of[r.dtype]);
    pf.prefill_s = pk.prefill_s + fresh_seconds(p, pages_of[r.dtype], pre_fresh);
    SelfCheckRow row = self_check_row(r, placement + ", at its fresh pages", pf);
    row.prefill_checked = false;
    f.self_check.push_back(row);
    SelfCheckRow kr = self_check_row(k, placement + ", glibc keeping freed memory", pk);
    kr.decode_checked = false;
    f.self_check.push_back(kr);
    std::ostringstream s;
    s << std::setprecision(3) << "  " << dtype_name(r.dtype) << ", " << placement << ": copies "
      << p.offload_copy_scale[r.dtype] << " x their time alone in a forward, " << p.offload_cold_scale[r.dtype]
      << " x that from a file not in the page cache (a cold prefill); decode " << r.decode() * 1e3 << " ms/token ("
      << fresh_of[r.dtype] << " fresh pages); glibc keeping what it frees " << k.decode() * 1e3 << " measured, "
      << pk.decode_token_s * 1e3 << " predicted (" << std::showpos << (pk.decode_token_s / k.decode() - 1) * 100
      << std::noshowpos << " %, another process: not checked)";
    f.summary.push_back(s.str());
    YAML::Node m = run_node(r);
    m["kept_decode_ms"] = round4(k.decode() * 1e3);
    m["kept_prefill_ms"] = round4(k.prefill() * 1e3);
    m["kept_predicted_decode_ms"] = round4(pk.decode_token_s * 1e3);
    m["copy_scale"] = p.offload_copy_scale[r.dtype];
    m["cold_scale"] = p.offload_cold_scale[r.dtype];
    m["kept_predicted_prefill_ms"] = round4(pk.prefill_s * 1e3);
    m["decode_minor_faults"] = round4(median(r.decode_faults));
    m["kept_decode_minor_faults"] = round4(median(k.decode_faults));
    m["prefill_fresh_pages"] = round4(pre_fresh);
    off[std::string(dtype_name(r.dtype))] = m;
  }
  return off;
}

}  // namespace

TorchFit fit_torch_profile(const ModelSpec& spec, const sim::Hardware& hw, const sim::Calibration& base,
                           const TorchProbe& probe, const TorchProbe* offload, const TorchProbe* kept) {
  DMAP_CHECK(!probe.runs.empty(), "a probe without runs");
  TorchFit f;
  const DeviceMap cpu_map = layers_on_disk_map(spec, 0);
  sim::Calibration cal = base;
  sim::RuntimeProfile& p = cal.runtimes[sim::Runtime::kTransformers];
  p = sim::RuntimeProfile{};
  p.measured = true;
  p.version =
      "torch " + probe.torch_version + ", " + std::to_string(probe.threads) + " threads; " + probe.implementation;
  for (const auto& r : probe.runs) p.matvec_efficiency[r.dtype] = p.matmul_efficiency[r.dtype] = 1.0;
  // PyTorch's own one-row products, where the grid was timed.
  std::map<DType, MatvecTerms> terms;
  for (const auto& r : probe.runs) {
    if (r.matvec.size() < 3) continue;
    const MatvecTerms t = fit_matvec_terms(r.matvec, r.dtype);
    terms[r.dtype] = t;
    p.matvec_gbs[r.dtype] = round4(t.gbs);
    p.matvec_row_ns[r.dtype] = round4(t.row_ns);
  }
  auto pred = [&](DType d) {
    return predict(spec, d, cpu_map, hw, &cal, probe.prompt, probe.new_tokens, sim::Semantics::kCpu,
                   sim::Runtime::kTransformers);
  };
  // The operators one decode step charges overhead for: the step's time per microsecond of it.
  f.kernels_per_step = operators_per_step(p, [&] { return pred(probe.runs.front().dtype).decode_token_s; });
  std::vector<double> ops, loops;
  for (const auto& r : probe.runs) {
    ops.push_back(r.tiny_decode() / f.kernels_per_step * 1e6);
    loops.push_back(r.loop() * 1e6);
  }
  p.op_overhead_us = median(ops);
  p.step_overhead_us = median(loops);
  // The efficiencies (runtime_fit.h): the one-row first, the prefill depends on both.
  for (const auto& r : probe.runs) {
    solve_efficiency(
        p.matvec_efficiency[r.dtype], [&] { return pred(r.dtype).decode_token_s; }, r.decode());
    solve_efficiency(
        p.matmul_efficiency[r.dtype], [&] { return pred(r.dtype).prefill_s; }, r.prefill());
  }
  std::ostringstream sum;
  sum << std::setprecision(3);
  sum << "transformers runtime (torch " << probe.torch_version << "): " << *p.op_overhead_us << " us per operator ("
      << f.kernels_per_step << " per decode step), " << *p.step_overhead_us << " us between forwards";
  f.summary.push_back(sum.str());
  YAML::Node fit;
  fit["torch"] = probe.torch_version;
  fit["implementation"] = probe.implementation;
  fit["threads"] = probe.threads;
  fit["prompt"] = probe.prompt;
  fit["new_tokens"] = probe.new_tokens;
  fit["kernels_per_decode_step"] = round4(f.kernels_per_step);
  for (const auto& r : probe.runs) {
    f.self_check.push_back(self_check_row(r, "cpu", pred(r.dtype)));
    std::ostringstream s;
    const auto t = terms.find(r.dtype);
    s << std::setprecision(3) << "  " << dtype_name(r.dtype) << ": one-row products at " << p.matvec_efficiency[r.dtype]
      << (t != terms.end() ? " of PyTorch's own measured rate" : " of dmap's rate") << ", M >= 2 at "
      << p.matmul_efficiency[r.dtype] << "; decode " << r.decode() * 1e3 << " ms/token, prefill " << r.prefill() * 1e3
      << " ms measured";
    if (t != terms.end()) {
      s << "; its one-row products " << matvec_terms_text(t->second);
    }
    f.summary.push_back(s.str());
    YAML::Node m = run_node(r);
    m["loop_us"] = round4(r.loop() * 1e6);
    m["tiny_decode_us"] = round4(r.tiny_decode() * 1e6);
    if (t != terms.end()) {
      m["matvec"] = matvec_terms_node(t->second);
    }
    fit[std::string(dtype_name(r.dtype))] = m;
  }
  if (offload && offload->disk_layers > 0)
    fit["disk_offload"] = fit_disk_offload(spec, hw, cal, probe, *offload, kept, f);
  f.profile = p;
  f.fit = fit;
  return f;
}

}  // namespace dmap::profile
