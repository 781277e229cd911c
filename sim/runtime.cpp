// Runtimes and their profiles (see runtime.h).
#include "sim/runtime.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/yaml_io.h"

namespace dmap::sim {

std::string runtime_name(Runtime r) {
  switch (r) {
    case Runtime::kDmap: return "dmap";
    case Runtime::kTransformers: return "transformers";
    case Runtime::kLlamaCpp: return "llama.cpp";
  }
  return "?";
}

std::optional<Runtime> parse_runtime(const std::string& s) {
  if (s == "dmap") return Runtime::kDmap;
  if (s == "transformers") return Runtime::kTransformers;
  if (s == "llama.cpp" || s == "llama_cpp" || s == "llamacpp") return Runtime::kLlamaCpp;
  return std::nullopt;
}

std::string runtime_fit_key(Runtime r) {
  return "runtime_" + std::string(r == Runtime::kLlamaCpp ? "llama_cpp" : runtime_name(r));
}

const std::vector<Runtime>& all_runtimes() {
  static const std::vector<Runtime> v = {Runtime::kTransformers, Runtime::kLlamaCpp, Runtime::kDmap};
  return v;
}

bool runtime_runs(Runtime r, Semantics s) {
  if (s == Semantics::kCpu) return true;
  switch (r) {
    case Runtime::kDmap: return true;
    case Runtime::kTransformers: return s == Semantics::kAccelerate;
    case Runtime::kLlamaCpp: return s == Semantics::kInPlace;
  }
  return false;
}

namespace {
double lookup(const std::map<DType, double>& m, DType d) {
  auto it = m.find(d);
  if (it == m.end()) it = m.find(DType::kFloat32);
  return it == m.end() ? 1.0 : it->second;
}
}  // namespace

double RuntimeProfile::matvec_for(DType d) const { return lookup(matvec_efficiency, d); }
double RuntimeProfile::matmul_for(DType d) const { return lookup(matmul_efficiency, d); }
bool RuntimeProfile::no_mmap_in(DType d) const {
  const auto it = load.find(d);
  return it != load.end() ? it->second : no_mmap;
}

const std::vector<std::string>& glibc_keep_freed_env() {
  static const std::vector<std::string> env = {"MALLOC_MMAP_MAX_=0", "MALLOC_TRIM_THRESHOLD_=68719476736"};
  return env;
}

std::string glibc_keep_freed_text() {
  std::string t;
  for (const auto& e : glibc_keep_freed_env()) t += (t.empty() ? "" : " ") + e;
  return t;
}

RuntimeProfile estimated_profile(Runtime r) {
  RuntimeProfile p;
  switch (r) {
    case Runtime::kDmap: p.version = "dmap's own executor: the calibration's figures"; break;
    case Runtime::kTransformers:
      // Measured on an AMD EPYC VM (2 vCPU, AVX2) by the issue that asked for runtimes: PyTorch
      // (Debian's 1.13) decoded TinyLlama-shaped weights 1.4x slower than dmap in float32 and
      // 3.4x slower in bfloat16 (2 threads). Per operator: eager PyTorch runs 2-4 aten ops per
      // cost-model operator (RMSNorm alone is six), each a few microseconds of Python and
      // dispatcher; per forward, generate()'s logits processing, stopping criteria and cache
      // bookkeeping. A measured profile (`dmap profile --real --runtime transformers`) replaces it.
      p.version = "estimate: PyTorch eager, from one AVX2 machine's decode ratios and per-op costs";
      p.matvec_efficiency = {{DType::kFloat32, 0.71}, {DType::kBFloat16, 0.29}, {DType::kFloat16, 0.29}};
      p.matmul_efficiency = {{DType::kFloat32, 0.8}, {DType::kBFloat16, 0.4}, {DType::kFloat16, 0.4}};
      p.op_overhead_us = 15;
      p.step_overhead_us = 1000;
      p.gpu_op_overhead_us = 20;
      break;
    case Runtime::kLlamaCpp:
      // The same issue's measurement: llama.cpp decoded about as fast as dmap and prefilled about
      // half as fast in float32 and bfloat16. ggml's per-node cost (thread barriers) is a couple
      // of microseconds; sampling over the vocabulary a few hundred per token.
      p.version = "estimate: llama.cpp, from one AVX2 machine's decode and prefill ratios";
      p.matvec_efficiency = {{DType::kFloat32, 1.0}};
      p.matmul_efficiency = {{DType::kFloat32, 0.5}};
      p.op_overhead_us = 3;
      p.step_overhead_us = 200;
      p.gpu_op_overhead_us = 4;
      break;
  }
  return p;
}

namespace {

std::optional<double> read_non_negative(const std::string& f, const YAML::Node& m, const char* key,
                                        const std::string& where) {
  const YAML::Node n = m[key];
  if (!n.IsDefined()) return std::nullopt;
  const double v = yaml_double(f, n, where + "." + key);
  if (!(v >= 0) || !std::isfinite(v)) fail_at(f, n, where + "." + key + ": must be a number >= 0");
  return v;
}

std::map<DType, double> read_efficiency(const std::string& f, const YAML::Node& n, const std::string& what) {
  std::map<DType, double> out;
  auto one = [&](const YAML::Node& v, const std::string& w) {
    const double x = yaml_double(f, v, w);
    if (!(x > 0 && x <= 10)) fail_at(f, v, w + ": an efficiency is a factor in (0, 10], found " + v.Scalar());
    return x;
  };
  if (n.IsScalar()) {
    out[DType::kFloat32] = one(n, what);
    return out;
  }
  if (!n.IsMap() || n.size() == 0) fail_at(f, n, what + ": expected a number or a mapping dtype -> factor");
  for (const auto& kv : n) {
    const std::string name = yaml_string(f, kv.first, what + " dtype");
    const auto d = parse_dtype(name);
    if (!d) fail_at(f, kv.first, what + ": unknown dtype '" + name + "'");
    out[*d] = one(kv.second, what + "." + name);
  }
  return out;
}

// A mapping dtype -> number (positive; zero too where `zero_ok`).
std::map<DType, double> read_per_dtype(const std::string& f, const YAML::Node& n, const std::string& what,
                                       bool zero_ok) {
  if (!n.IsMap() || n.size() == 0) fail_at(f, n, what + ": expected a mapping dtype -> number");
  std::map<DType, double> out;
  for (const auto& kv : n) {
    const std::string name = yaml_string(f, kv.first, what + " dtype");
    const auto d = parse_dtype(name);
    if (!d) fail_at(f, kv.first, what + ": unknown dtype '" + name + "'");
    const double x = yaml_double(f, kv.second, what + "." + name);
    if (!std::isfinite(x) || x < 0 || (x == 0 && !zero_ok))
      fail_at(f, kv.second, what + "." + name + ": must be a number " + (zero_ok ? ">= 0" : "> 0"));
    out[*d] = x;
  }
  return out;
}

std::string num(double v) {
  std::ostringstream o;
  o << std::setprecision(6) << v;
  return o.str();
}

}  // namespace

std::map<Runtime, RuntimeProfile> read_runtime_profiles(const std::string& f, const YAML::Node& node) {
  if (!node.IsMap()) fail_at(f, node, "runtimes: expected a mapping runtime -> profile");
  std::map<Runtime, RuntimeProfile> out;
  for (const auto& kv : node) {
    const std::string name = yaml_string(f, kv.first, "runtime");
    const auto r = parse_runtime(name);
    if (!r) fail_at(f, kv.first, "runtimes: unknown runtime '" + name + "' (known: dmap, transformers, llama.cpp)");
    const YAML::Node p = kv.second;
    const std::string where = "runtimes." + name;
    if (!p.IsMap()) fail_at(f, p, kv.first, where + ": expected a mapping");
    // Earlier dmaps' figures of accelerate's reads (2026-12-05, 2026-12-06): refitted, not reinterpreted.
    for (const char* old : {"offload_read_factor", "offload_read_scale"}) {
      if (!p[old].IsDefined()) continue;
      fail_at(f, p[old],
              where + "." + old +
                  ": an earlier dmap's figure, replaced by offload_copy_gbs, offload_copy_scale, fresh_page_us "
                  "and heap_fresh_share; re-run `dmap profile --real --runtime " +
                  name + "` to measure them (or delete the line: the executor's page-cache rates are used)");
    }
    if (p["offload_cold_factor"].IsDefined()) {
      fail_at(f, p["offload_cold_factor"],
              where +
                  ".offload_cold_factor: an earlier dmap's figure (a factor on the disk rate), replaced by "
                  "offload_cold_scale (a factor on the copy); re-run `dmap profile --real --runtime " +
                  name + "` to measure it (or delete the line)");
    }
    check_known_keys(f, p,
                     {"source", "version", "op_overhead_us", "step_overhead_us", "gpu_op_overhead_us",
                      "offload_tensor_overhead_us", "matvec_efficiency", "matmul_efficiency", "matvec_gbs",
                      "matvec_row_ns", "load", "mapped_factor", "offload_copy_gbs", "fresh_page_us", "mapped_page_us",
                      "heap_fresh_share", "offload_copy_scale", "offload_cold_scale", "unsupported_dtypes"},
                     where);
    RuntimeProfile rp;
    if (p["source"].IsDefined()) {
      const std::string s = yaml_string(f, p["source"], where + ".source");
      if (s != "measured" && s != "estimate")
        fail_at(f, p["source"], where + ".source: measured or estimate, found '" + s + "'");
      rp.measured = s == "measured";
    }
    if (p["version"].IsDefined()) rp.version = yaml_string(f, p["version"], where + ".version");
    rp.op_overhead_us = read_non_negative(f, p, "op_overhead_us", where);
    rp.step_overhead_us = read_non_negative(f, p, "step_overhead_us", where);
    rp.gpu_op_overhead_us = read_non_negative(f, p, "gpu_op_overhead_us", where);
    rp.offload_tensor_overhead_us = read_non_negative(f, p, "offload_tensor_overhead_us", where);
    if (p["matvec_efficiency"].IsDefined())
      rp.matvec_efficiency = read_efficiency(f, p["matvec_efficiency"], where + ".matvec_efficiency");
    if (p["matmul_efficiency"].IsDefined())
      rp.matmul_efficiency = read_efficiency(f, p["matmul_efficiency"], where + ".matmul_efficiency");
    if (p["matvec_gbs"].IsDefined()) rp.matvec_gbs = read_per_dtype(f, p["matvec_gbs"], where + ".matvec_gbs", false);
    if (p["matvec_row_ns"].IsDefined())
      rp.matvec_row_ns = read_per_dtype(f, p["matvec_row_ns"], where + ".matvec_row_ns", true);
    if (p["mapped_factor"].IsDefined())
      rp.mapped_factor = read_per_dtype(f, p["mapped_factor"], where + ".mapped_factor", false);
    rp.offload_copy_gbs = read_non_negative(f, p, "offload_copy_gbs", where);
    if (rp.offload_copy_gbs && !(*rp.offload_copy_gbs > 0))
      fail_at(f, p["offload_copy_gbs"], where + ".offload_copy_gbs: a rate above 0");
    rp.fresh_page_us = read_non_negative(f, p, "fresh_page_us", where);
    rp.mapped_page_us = read_non_negative(f, p, "mapped_page_us", where);
    rp.heap_fresh_share = read_non_negative(f, p, "heap_fresh_share", where);
    if (rp.heap_fresh_share && *rp.heap_fresh_share > 1)
      fail_at(f, p["heap_fresh_share"], where + ".heap_fresh_share: a share between 0 and 1");
    if (p["offload_copy_scale"].IsDefined())
      rp.offload_copy_scale = read_per_dtype(f, p["offload_copy_scale"], where + ".offload_copy_scale", false);
    if (p["offload_cold_scale"].IsDefined())
      rp.offload_cold_scale = read_per_dtype(f, p["offload_cold_scale"], where + ".offload_cold_scale", false);
    if (const YAML::Node u = p["unsupported_dtypes"]; u.IsDefined()) {
      if (!u.IsMap()) fail_at(f, u, where + ".unsupported_dtypes: expected a mapping dtype -> the runtime's error");
      for (const auto& e : u) {
        const std::string dn = yaml_string(f, e.first, where + ".unsupported_dtypes");
        const auto d = parse_dtype(dn);
        if (!d) fail_at(f, e.first, where + ".unsupported_dtypes: '" + dn + "' is not a dtype");
        rp.unsupported[*d] = yaml_string(f, e.second, where + ".unsupported_dtypes." + dn);
      }
    }
    if (const YAML::Node l = p["load"]; l.IsDefined()) {
      if (*r != Runtime::kLlamaCpp) fail_at(f, l, where + ".load: only llama.cpp has a load mode");
      auto mode = [&](const YAML::Node& n, const std::string& at) {
        const std::string s = yaml_string(f, n, at);
        if (s != "mmap" && s != "no-mmap") fail_at(f, n, at + ": mmap or no-mmap, found '" + s + "'");
        return s == "no-mmap";
      };
      if (l.IsMap()) {
        for (const auto& e : l) {
          const std::string dn = yaml_string(f, e.first, where + ".load");
          const auto d = parse_dtype(dn);
          if (!d) fail_at(f, e.first, where + ".load: '" + dn + "' is not a dtype");
          rp.load[*d] = mode(e.second, where + ".load." + dn);
        }
      } else {
        rp.no_mmap = mode(l, where + ".load");
      }
    }
    out[*r] = rp;
  }
  return out;
}

std::string runtime_profiles_yaml(const std::map<Runtime, RuntimeProfile>& m) {
  if (m.empty()) return "";
  std::ostringstream y;
  y << "runtimes:\n";
  for (const auto& [r, p] : m) {
    y << "  " << (r == Runtime::kLlamaCpp ? "\"llama.cpp\"" : runtime_name(r)) << ":\n";
    y << "    source: " << (p.measured ? "measured" : "estimate") << "\n";
    if (!p.version.empty()) {
      YAML::Emitter e;
      e << YAML::DoubleQuoted << p.version;
      y << "    version: " << e.c_str() << "\n";
    }
    auto put = [&](const char* key, const std::optional<double>& v) {
      if (v) y << "    " << key << ": " << num(*v) << "\n";
    };
    auto put_map = [&](const char* key, const std::map<DType, double>& mm) {
      if (mm.empty()) return;
      y << "    " << key << ": {";
      bool first = true;
      for (const auto& [d, v] : mm) {
        y << (first ? "" : ", ") << dtype_name(d) << ": " << num(v);
        first = false;
      }
      y << "}\n";
    };
    put("op_overhead_us", p.op_overhead_us);
    put("step_overhead_us", p.step_overhead_us);
    put("gpu_op_overhead_us", p.gpu_op_overhead_us);
    put("offload_tensor_overhead_us", p.offload_tensor_overhead_us);
    put_map("matvec_efficiency", p.matvec_efficiency);
    put_map("matmul_efficiency", p.matmul_efficiency);
    put_map("matvec_gbs", p.matvec_gbs);
    put_map("matvec_row_ns", p.matvec_row_ns);
    if (r == Runtime::kLlamaCpp && !p.load.empty()) {
      y << "    load: {";
      bool first = true;
      for (const auto& [d, no] : p.load) {
        y << (first ? "" : ", ") << dtype_name(d) << ": " << (no ? "no-mmap" : "mmap");
        first = false;
      }
      y << "}\n";
    } else if (r == Runtime::kLlamaCpp && (p.no_mmap || !p.mapped_factor.empty())) {
      y << "    load: " << (p.no_mmap ? "no-mmap" : "mmap") << "\n";
    }
    put_map("mapped_factor", p.mapped_factor);
    put("offload_copy_gbs", p.offload_copy_gbs);
    put("fresh_page_us", p.fresh_page_us);
    put("mapped_page_us", p.mapped_page_us);
    put("heap_fresh_share", p.heap_fresh_share);
    put_map("offload_copy_scale", p.offload_copy_scale);
    put_map("offload_cold_scale", p.offload_cold_scale);
    if (!p.unsupported.empty()) {
      y << "    unsupported_dtypes: {";
      bool first = true;
      for (const auto& [d, why] : p.unsupported) {
        YAML::Emitter e;
        e << YAML::DoubleQuoted << why;
        y << (first ? "" : ", ") << dtype_name(d) << ": " << e.c_str();
        first = false;
      }
      y << "}\n";
    }
  }
  return y.str();
}

}  // namespace dmap::sim
