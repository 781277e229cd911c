// Hardware presets and inline hardware descriptions.
#include "sim/hardware.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/device_map.h"
#include "core/error.h"
#include "core/yaml_io.h"

namespace dmap::sim {

namespace fs = std::filesystem;

std::string source_name(Source s) {
  switch (s) {
    case Source::kCalibrated: return "calibrated";
    case Source::kEstimate: return "estimate";
    case Source::kDatasheet: break;
  }
  return "datasheet";
}

namespace {

// Reads one component: preset id (scalar) or inline mapping. Returns the node and the file
// that located it (errors point into the preset file when the figure lives there).
struct Located {
  YAML::Node node;
  std::string file;
  std::string id;
};

Located locate(const YAML::Node& ref, const std::string& file, const std::string& hardware_dir,
               const std::string& kind) {
  if (ref.IsScalar()) {
    const std::string id = ref.Scalar();
    const fs::path p = fs::path(hardware_dir) / (id + ".yaml");
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      std::string known;
      for (const auto& k : list_presets(kind, hardware_dir)) known.append(known.empty() ? "" : ", ").append(k);
      fail_at(file, ref, "unknown " + kind + " preset '" + id + "' (known: " + known + ")");
    }
    Located l{load_yaml_file(p.string()), p.string(), id};
    if (!l.node.IsMap()) fail_at(l.file, l.node, "a hardware preset must be a mapping");
    const YAML::Node k = l.node["kind"];
    const std::string got = k.IsDefined() && k.IsScalar() ? k.Scalar() : "";
    if (got != kind)
      fail_at(file, ref, "preset '" + id + "' is a " + (got.empty() ? "file without kind" : got) + ", not a " + kind);
    return l;
  }
  if (!ref.IsMap()) fail_at(file, ref, kind + ": expected a preset name or a mapping");
  return Located{ref, file, "inline"};
}

const YAML::Node need(const Located& l, const char* key) {
  const YAML::Node n = l.node[key];
  if (!n.IsDefined() || n.IsNull()) fail_at(l.file, l.node, std::string("missing '") + key + "'");
  return n;
}

double positive(const Located& l, const char* key, double scale) {
  const YAML::Node n = need(l, key);
  const double v = yaml_double(l.file, n, key);
  if (!(v > 0)) fail_at(l.file, n, std::string(key) + ": must be positive, found " + n.Scalar());
  return v * scale;
}

double non_negative(const Located& l, const char* key, double scale, double fallback) {
  const YAML::Node n = l.node[key];
  if (!n.IsDefined() || n.IsNull()) return fallback;
  const double v = yaml_double(l.file, n, key);
  if (v < 0) fail_at(l.file, n, std::string(key) + ": must not be negative, found " + n.Scalar());
  return v * scale;
}

Bytes size_of(const Located& l, const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar()) fail_at(l.file, n, what + ": expected a size such as 24GiB");
  if (is_int_literal(n.Scalar())) {
    const int64_t v = yaml_int(l.file, n, what);
    if (v < 0) fail_at(l.file, n, what + ": must not be negative");
    if (v > kMaxMemoryBytes) fail_at(l.file, n, what + ": " + n.Scalar() + " is beyond dmap's limit of 64 PiB");
    return v;
  }
  auto b = parse_memory_size(n.Scalar());
  if (!b) fail_at(l.file, n, what + ": cannot read size '" + n.Scalar() + "' (use e.g. 24GiB, 80GB, 512MiB)");
  if (*b > kMaxMemoryBytes) fail_at(l.file, n, what + ": " + n.Scalar() + " is beyond dmap's limit of 64 PiB");
  return *b;
}

std::string name_of(const Located& l) {
  const YAML::Node n = l.node["name"];
  return n.IsDefined() && n.IsScalar() ? n.Scalar() : l.id;
}

std::map<DType, Figure> flops_map(const Located& l, const char* key, double scale) {
  const YAML::Node n = need(l, key);
  if (!n.IsMap()) fail_at(l.file, n, std::string(key) + ": expected a mapping dtype -> rate");
  std::map<DType, Figure> out;
  for (const auto& kv : n) {
    const std::string d = yaml_string(l.file, kv.first, "dtype");
    auto dt = parse_dtype(d);
    if (!dt) fail_at(l.file, kv.first, std::string(key) + ": unknown dtype '" + d + "'");
    const double v = yaml_double(l.file, kv.second, std::string(key) + "." + d);
    if (!(v > 0)) fail_at(l.file, kv.second, std::string(key) + "." + d + ": must be positive");
    out[*dt] = Figure{v * scale, Source::kDatasheet};
  }
  if (!out.count(DType::kFloat32)) fail_at(l.file, n, std::string(key) + ": needs at least float32");
  return out;
}

void read_achievable(const Located& l, double& memory, double& compute) {
  const YAML::Node a = l.node["achievable"];
  if (!a.IsDefined() || a.IsNull()) return;
  if (!a.IsMap()) fail_at(l.file, a, "achievable: expected {memory: f, compute: f}");
  check_known_keys(l.file, a, {"memory", "compute"}, "achievable");
  auto frac = [&](const char* key, double& out) {
    const YAML::Node n = a[key];
    if (!n.IsDefined()) return;
    const double v = yaml_double(l.file, n, std::string("achievable.") + key);
    if (!(v > 0 && v <= 1)) fail_at(l.file, n, std::string("achievable.") + key + ": must be in (0, 1]");
    out = v;
  };
  frac("memory", memory);
  frac("compute", compute);
}

constexpr double kGB = 1e9;
constexpr double kUs = 1e-6;

// The keys each component may have (preset files also carry `kind`).
const std::vector<std::string> kGpuKeys = {"kind",
                                           "name",
                                           "memory",
                                           "memory_bandwidth_gbs",
                                           "peak_tflops",
                                           "launch_overhead_us",
                                           "runtime_context",
                                           "p2p_gbs",
                                           "achievable",
                                           "compute_capability",
                                           "dequant"};
const std::vector<std::string> kHostKeys = {"kind",
                                            "name",
                                            "cores",
                                            "memory_bandwidth_gbs",
                                            "ram",
                                            "reserved_ram",
                                            "peak_gflops",
                                            "dispatch_overhead_us",
                                            "offload_tensor_overhead_us",
                                            "achievable",
                                            "dequant"};
const std::vector<std::string> kLinkKeys = {
    "kind",   "name", "h2d_pinned_gbs", "h2d_pageable_gbs", "d2h_pinned_gbs", "d2h_pageable_gbs", "copy_latency_us",
    "p2p_gbs"};
const std::vector<std::string> kDiskKeys = {"kind", "name", "read_gbs", "read_latency_us"};
const std::vector<std::string> kSystemKeys = {
    "kind", "name", "system", "host", "gpus", "link", "disk", "gpu_memory_in_use", "page_cache"};

// `dequant: {<quant method>: {decode_bytes_per_weight, prefill_bytes_per_weight, kernels}}`.
std::map<std::string, DequantFigure> read_dequant(const Located& l) {
  std::map<std::string, DequantFigure> out;
  const YAML::Node d = l.node["dequant"];
  if (!d.IsDefined() || d.IsNull()) return out;
  if (!d.IsMap()) fail_at(l.file, d, "dequant: expected a mapping of quantization methods");
  static const std::vector<std::string> methods = {"bitsandbytes_4bit", "bitsandbytes_8bit",  "gptq", "awq", "fp8",
                                                   "fbgemm_fp8",        "compressed-tensors", "mxfp4"};
  check_known_keys(l.file, d, methods, "dequant");
  for (const auto& kv : d) {
    const YAML::Node f = kv.second;
    if (!f.IsMap()) fail_at(l.file, f, "dequant." + kv.first.Scalar() + ": expected a mapping");
    check_known_keys(l.file, f, {"decode_bytes_per_weight", "prefill_bytes_per_weight", "kernels"},
                     "dequant." + kv.first.Scalar());
    DequantFigure fig;
    fig.source = Source::kDatasheet;
    for (const auto& [key, slot] : {std::pair{"decode_bytes_per_weight", &fig.decode_bytes_per_weight},
                                    std::pair{"prefill_bytes_per_weight", &fig.prefill_bytes_per_weight}}) {
      if (f[key].IsDefined()) {
        *slot = yaml_double(l.file, f[key], key);
        if (!(*slot >= 0 && *slot <= 64))
          fail_at(l.file, f[key], std::string(key) + ": expected 0 to 64 bytes per weight");
      }
    }
    if (f["kernels"].IsDefined()) {
      const int64_t k = yaml_int(l.file, f["kernels"], "kernels");
      if (k < 0 || k > 100) fail_at(l.file, f["kernels"], "kernels: expected 0 to 100");
      fig.kernels = static_cast<int>(k);
    }
    out[kv.first.Scalar()] = fig;
  }
  return out;
}

std::string where_of(const Located& l, const char* kind) {
  return l.id == "inline" ? std::string(kind) : std::string(kind) + " preset '" + l.id + "'";
}

GpuSpec read_gpu(const Located& l) {
  check_known_keys(l.file, l.node, kGpuKeys, where_of(l, "gpu"));
  GpuSpec g;
  g.id = l.id;
  g.name = name_of(l);
  g.memory = size_of(l, need(l, "memory"), "memory");
  if (g.memory <= 0) fail_at(l.file, l.node["memory"], "memory: must be positive");
  g.memory_bandwidth = {positive(l, "memory_bandwidth_gbs", kGB), Source::kDatasheet};
  g.peak_flops = flops_map(l, "peak_tflops", 1e12);
  g.launch_overhead = {non_negative(l, "launch_overhead_us", kUs, 5 * kUs), Source::kDatasheet};
  if (l.node["runtime_context"].IsDefined())
    g.runtime_context = size_of(l, l.node["runtime_context"], "runtime_context");
  if (l.node["compute_capability"].IsDefined()) {
    g.compute_capability = yaml_double(l.file, l.node["compute_capability"], "compute_capability");
    if (g.compute_capability < 1 || g.compute_capability > 20) {
      fail_at(l.file, l.node["compute_capability"], "compute_capability: expected a CUDA capability such as 8.6");
    }
  }
  if (l.node["p2p_gbs"].IsDefined()) g.p2p_bandwidth = positive(l, "p2p_gbs", kGB);
  read_achievable(l, g.achievable_memory, g.achievable_compute);
  g.dequant = read_dequant(l);
  return g;
}

HostSpec read_host(const Located& l) {
  check_known_keys(l.file, l.node, kHostKeys, where_of(l, "host"));
  HostSpec h;
  h.id = l.id;
  h.name = name_of(l);
  const YAML::Node cores = need(l, "cores");
  h.cores = static_cast<int>(yaml_int(l.file, cores, "cores"));
  if (h.cores <= 0) fail_at(l.file, cores, "cores: must be positive");
  h.memory_bandwidth = {positive(l, "memory_bandwidth_gbs", kGB), Source::kDatasheet};
  h.ram = size_of(l, need(l, "ram"), "ram");
  if (l.node["reserved_ram"].IsDefined()) h.reserved_ram = size_of(l, l.node["reserved_ram"], "reserved_ram");
  if (h.reserved_ram >= h.ram) fail_at(l.file, l.node["reserved_ram"], "reserved_ram: must be less than ram");
  h.peak_flops = flops_map(l, "peak_gflops", 1e9);
  h.dispatch_overhead = {non_negative(l, "dispatch_overhead_us", kUs, 10 * kUs), Source::kDatasheet};
  h.offload_tensor_overhead = {non_negative(l, "offload_tensor_overhead_us", kUs, 40 * kUs), Source::kDatasheet};
  read_achievable(l, h.achievable_memory, h.achievable_compute);
  h.dequant = read_dequant(l);
  return h;
}

LinkSpec read_link(const Located& l) {
  check_known_keys(l.file, l.node, kLinkKeys, where_of(l, "link"));
  LinkSpec k;
  k.id = l.id;
  k.name = name_of(l);
  k.h2d_pinned = {positive(l, "h2d_pinned_gbs", kGB), Source::kDatasheet};
  k.h2d_pageable = {positive(l, "h2d_pageable_gbs", kGB), Source::kDatasheet};
  k.d2h_pinned = {non_negative(l, "d2h_pinned_gbs", kGB, k.h2d_pinned.value), Source::kDatasheet};
  k.d2h_pageable = {non_negative(l, "d2h_pageable_gbs", kGB, k.h2d_pageable.value), Source::kDatasheet};
  k.copy_latency = {non_negative(l, "copy_latency_us", kUs, 10 * kUs), Source::kDatasheet};
  if (l.node["p2p_gbs"].IsDefined()) k.p2p_bandwidth = positive(l, "p2p_gbs", kGB);
  return k;
}

DiskSpec read_disk(const Located& l) {
  check_known_keys(l.file, l.node, kDiskKeys, where_of(l, "disk"));
  DiskSpec d;
  d.id = l.id;
  d.name = name_of(l);
  d.read_bandwidth = {positive(l, "read_gbs", kGB), Source::kDatasheet};
  d.read_latency = {non_negative(l, "read_latency_us", kUs, 100 * kUs), Source::kDatasheet};
  return d;
}

}  // namespace

std::vector<std::string> list_presets(const std::string& kind, const std::string& hardware_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(hardware_dir, ec)) {
    if (e.path().extension() != ".yaml") continue;
    try {
      const YAML::Node n = load_yaml_file(e.path().string());
      if (n.IsMap() && n["kind"].IsDefined() && n["kind"].IsScalar() && n["kind"].Scalar() == kind) {
        out.push_back(e.path().stem().string());
      }
    } catch (const std::exception&) {
      // a broken preset is reported when it is used, not while listing
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

GpuSpec load_gpu(const std::string& id, const std::string& hardware_dir) {
  return read_gpu(locate(YAML::Node(id), "<preset>", hardware_dir, "gpu"));
}

HostSpec load_host(const std::string& id, const std::string& hardware_dir) {
  return read_host(locate(YAML::Node(id), "<preset>", hardware_dir, "host"));
}

Hardware parse_hardware(const YAML::Node& node, const std::string& file, const std::string& hardware_dir) {
  if (!node.IsDefined() || node.IsNull()) fail_at(file, node, "scenario has no 'hardware'");
  if (!node.IsScalar() && !node.IsMap()) fail_at(file, node, "hardware: expected a system preset name or a mapping");
  // A system preset (`hardware: id` or `hardware: {system: id, ...}`) gives defaults; keys
  // written in the scenario override them.
  Located base{YAML::Node(YAML::NodeType::Map), file, "inline"};
  Located over{node.IsMap() ? node : YAML::Node(YAML::NodeType::Map), file, "inline"};
  if (node.IsScalar()) {
    base = locate(node, file, hardware_dir, "system");
  } else if (node["system"].IsDefined()) {
    base = locate(node["system"], file, hardware_dir, "system");
  }
  if (node.IsMap()) check_known_keys(file, node, kSystemKeys, "hardware");
  if (base.id != "inline") check_known_keys(base.file, base.node, kSystemKeys, where_of(base, "system"));
  auto pick = [&](const char* key) -> const Located& { return over.node[key].IsDefined() ? over : base; };
  Hardware hw;
  {
    const Located& src = pick("host");
    if (!src.node["host"].IsDefined()) fail_at(file, node, "hardware: missing 'host' (e.g. desktop_ddr5_dual)");
    hw.host = read_host(locate(src.node["host"], src.file, hardware_dir, "host"));
  }
  {
    const Located& src = pick("gpus");
    const YAML::Node gpus = src.node["gpus"];
    if (gpus.IsDefined() && !gpus.IsNull()) {
      if (!gpus.IsSequence()) fail_at(src.file, gpus, "hardware.gpus: expected a list of GPU presets");
      for (const auto& g : gpus) hw.gpus.push_back(read_gpu(locate(g, src.file, hardware_dir, "gpu")));
    }
  }
  {
    const Located& src = pick("link");
    if (src.node["link"].IsDefined()) {
      hw.link = read_link(locate(src.node["link"], src.file, hardware_dir, "link"));
    } else if (!hw.gpus.empty()) {
      fail_at(file, node, "hardware: GPUs given but no 'link' (e.g. pcie4_x16)");
    }
  }
  {
    const Located& src = pick("disk");
    if (!src.node["disk"].IsDefined()) fail_at(file, node, "hardware: missing 'disk' (e.g. nvme_gen4)");
    hw.disk = read_disk(locate(src.node["disk"], src.file, hardware_dir, "disk"));
  }
  {
    const Located& src = pick("gpu_memory_in_use");
    const YAML::Node used = src.node["gpu_memory_in_use"];
    if (used.IsDefined() && !used.IsNull()) {
      if (!used.IsMap()) fail_at(src.file, used, "gpu_memory_in_use: expected {gpu: size}");
      for (const auto& kv : used) {
        const std::string key = yaml_string(src.file, kv.first, "gpu");
        auto dev = parse_device(key);
        if (!dev || !dev->is_gpu() || dev->index >= static_cast<int>(hw.gpus.size())) {
          fail_at(src.file, kv.first,
                  "gpu_memory_in_use: '" + key + "' is not one of the " + std::to_string(hw.gpus.size()) +
                      " GPUs of this hardware");
        }
        const Bytes b = size_of(src, kv.second, "gpu_memory_in_use");
        if (b >= hw.gpus[dev->index].memory) {
          fail_at(src.file, kv.second,
                  "gpu_memory_in_use: " + kv.second.Scalar() + " is not less than GPU " + key + "'s memory");
        }
        hw.gpu_memory_in_use[dev->index] = b;
      }
    }
  }
  {
    const Located& src = pick("page_cache");
    if (src.node["page_cache"].IsDefined()) hw.page_cache = yaml_bool(src.file, src.node["page_cache"], "page_cache");
  }
  return hw;
}

std::string Hardware::describe() const {
  std::ostringstream s;
  if (gpus.empty()) {
    s << "no GPU";
  } else {
    // Group identical consecutive GPUs: "4x NVIDIA A100 80GB".
    for (size_t i = 0; i < gpus.size();) {
      size_t j = i;
      while (j < gpus.size() && gpus[j].name == gpus[i].name) ++j;
      if (i) s << " + ";
      s << (j - i) << "x " << gpus[i].name;
      i = j;
    }
  }
  s << "; host " << host.name;
  if (!gpus.empty()) s << "; " << link.name;
  s << "; " << disk.name;
  return s.str();
}

Bytes Hardware::gpu_capacity(int gpu) const {
  const auto in_use = gpu_memory_in_use.count(gpu) ? gpu_memory_in_use.at(gpu) : 0;
  Bytes c = gpus.at(static_cast<size_t>(gpu)).memory - in_use;
  if (gpu_cap.count(gpu)) c = std::min(c, gpu_cap.at(gpu));
  return c;
}

Bytes Hardware::host_capacity() const {
  Bytes c = host.ram - host.reserved_ram;
  if (host_cap) c = std::min(c, *host_cap);
  return c;
}

bool Hardware::gpu_capped(int gpu) const {
  const auto in_use = gpu_memory_in_use.count(gpu) ? gpu_memory_in_use.at(gpu) : 0;
  return gpu_cap.count(gpu) && gpu_cap.at(gpu) < gpus.at(static_cast<size_t>(gpu)).memory - in_use;
}

bool Hardware::host_capped() const { return host_cap && *host_cap < host.ram - host.reserved_ram; }

}  // namespace dmap::sim
