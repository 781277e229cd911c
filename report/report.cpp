// Markdown + SVG report of one scenario.
#include "report/report.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/output.h"
#include "report/svg.h"
#include "sim/render.h"

namespace dmap::report {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kGiB = 1024.0 * 1024 * 1024;

void write_file(const fs::path& p, const std::string& text, std::vector<std::string>& written) {
  write_file_atomic(p.string(), text);
  written.push_back(p.string());
}

std::string row_label(const sim::ResultRow& r) {
  return r.strategy + " / " + r.semantics + (r.runtime.empty() ? "" : " / " + r.runtime);
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::vector<Bytes> crossover_budgets(const sim::SimScenario& s, const sim::Evaluation& ev) {
  if (!s.crossover_budgets.empty()) return s.crossover_budgets;
  std::vector<Bytes> out;
  const double weights = static_cast<double>(ev.graph->weight_bytes_total());
  for (int i = 1; i <= 14; ++i) out.push_back(static_cast<Bytes>(weights * 0.1 * i - weights * 0.05));
  return out;
}

std::vector<std::string> write_report(const sim::SimScenario& s, const sim::Evaluation& ev,
                                      const std::string& out_dir) {
  fs::create_directories(out_dir);
  std::vector<std::string> written;
  const fs::path dir(out_dir);

  // 1. Time per token by strategy, broken down by resource.
  StackedBarChart t;
  t.title = "Predicted time per output token";
  t.y_label = "ms per token";
  t.horizontal = true;
  Series gpu{"GPU compute + memory", "#0072B2", {}}, cpu{"CPU compute + memory", "#E69F00", {}},
      link{"host-to-device transfer", "#D55E00", {}}, disk{"disk", "#999999", {}};
  for (int i : ev.ranking) {
    const sim::ResultRow& r = ev.rows[i];
    if (!r.error.empty() || !r.same_as.empty()) continue;
    const sim::Breakdown& b = r.pred.decode;
    t.categories.push_back(row_label(r));
    gpu.values.push_back(1e3 * (b[sim::Resource::kGpuCompute] + b[sim::Resource::kGpuMemory]));
    cpu.values.push_back(1e3 * (b[sim::Resource::kCpuCompute] + b[sim::Resource::kCpuMemory]));
    link.values.push_back(1e3 * b[sim::Resource::kH2d]);
    disk.values.push_back(1e3 * b[sim::Resource::kDisk]);
    t.bar_notes.push_back(r.pred.feasible     ? sim::format_seconds(r.pred.decode_token_s)
                          : r.pred.cannot_run ? "cannot run"
                                              : "OOM");
  }
  t.series = {gpu, cpu, link, disk};
  write_file(dir / "time_per_token.svg", render_svg(t), written);

  // 2. Crossover: time per token against the GPU memory budget.
  const std::vector<Bytes> budgets = crossover_budgets(s, ev);
  LineChart x;
  x.title = "Time per token against GPU memory budget";
  x.x_label = "GPU memory per GPU (GiB)";
  x.y_label = "ms per token";
  x.log_y = true;
  LineSeries la{"device_map='auto' (accelerate)", "#D55E00", {}, false};
  LineSeries lc{"CPU-only", "#E69F00", {}, true};
  LineSeries li{"auto's map, in-place", "#009E73", {}, false};
  LineSeries lo{"optimal", "#0072B2", {}, false};
  std::vector<sim::BudgetPoint> points;
  if (!s.hardware.gpus.empty()) {
    for (Bytes b : budgets) {
      const sim::BudgetPoint p = sim::evaluate_budget(s, b);
      points.push_back(p);
      const double gb = static_cast<double>(b) / kGiB;
      auto ms = [](double v) { return v < 0 ? kNaN : v * 1e3; };
      la.points.push_back({gb, ms(p.auto_s)});
      lc.points.push_back({gb, ms(p.cpu_s)});
      li.points.push_back({gb, ms(p.in_place_s)});
      lo.points.push_back({gb, ms(p.optimal_s)});
    }
    x.series = {la, lc, li, lo};
    x.markers.push_back({static_cast<double>(s.hardware.gpus[0].memory) / kGiB, "this GPU"});
    write_file(dir / "crossover.svg", render_svg(x), written);
  }

  // 3. Memory per device.
  StackedBarChart m;
  m.title = "Peak memory per device";
  m.y_label = "GiB";
  std::vector<Device> devices;
  for (const auto& r : ev.rows) {
    for (const auto& [d, b] : r.pred.memory) {
      if (std::find(devices.begin(), devices.end(), d) == devices.end()) devices.push_back(d);
    }
  }
  std::sort(devices.begin(), devices.end());
  for (const Device& d : devices) m.series.push_back({d.is_gpu() ? "GPU " + d.str() : d.str(), "", {}});
  for (int i : ev.ranking) {
    const sim::ResultRow& r = ev.rows[i];
    if (!r.error.empty() || !r.same_as.empty()) continue;
    m.categories.push_back(row_label(r));
    m.bar_notes.push_back(r.pred.feasible ? "" : r.pred.cannot_run ? "cannot run" : "OOM");
    for (size_t k = 0; k < devices.size(); ++k) {
      double v = 0;
      for (const auto& [d, b] : r.pred.memory) {
        if (d == devices[k]) v = static_cast<double>(b) / kGiB;
      }
      m.series[k].values.push_back(v);
    }
  }
  write_file(dir / "memory.svg", render_grouped_svg(m), written);
  write_file(dir / "results.json", sim::evaluation_json(s, ev), written);

  // index.md
  std::ostringstream md;
  md << "# " << (s.title.empty() ? s.base.id : s.title) << "\n\n";
  md << "Generated by `dmap report " << fs::path(s.base.file).filename().string()
     << "` from the scenario file; do not edit by hand.\n\n";
  md << "- **Model:** " << (ev.tree->model_name.empty() ? ev.tree->model_type : ev.tree->model_name) << ", "
     << dtype_name(s.workload.dtype) << ", " << fixed(static_cast<double>(ev.graph->weight_bytes_total()) / kGiB, 2)
     << " GiB of weights\n";
  md << "- **Hardware:** " << s.hardware.describe() << "\n";
  for (const auto& [g, b] : s.hardware.gpu_memory_in_use) {
    md << "- **Already in use:** GPU " << g << " holds " << fixed(static_cast<double>(b) / kGiB, 2)
       << " GiB of another program's memory\n";
  }
  md << "- **Workload:** batch " << s.workload.batch << ", prompt " << s.workload.prompt << " tokens, "
     << s.workload.new_tokens << " new tokens\n";
  md << "- **max_memory given to the planner:** `" << max_memory_to_json(ev.max_memory) << "`"
     << (ev.max_memory_derived ? " (derived from the hardware as transformers does)" : "") << "\n";
  md << "- **Figures:** "
     << (ev.rates.calibration_name.empty() ? "datasheet (no calibration)"
                                           : "calibrated by " + ev.rates.calibration_name)
     << "\n\n";
  md << "## Verdict\n\n" << ev.verdict << "\n\n";
  if (!ev.how_to_run.empty()) md << "Run it: `" << ev.how_to_run << "`\n\n";
  md << "## Every strategy\n\n" << sim::evaluation_markdown(s, ev) << "\n";
  bool any_oom = false;
  for (const auto& r : ev.rows) any_oom = any_oom || !r.pred.feasible;
  if (any_oom) {
    md << "Why placements do not fit or cannot run:\n\n";
    for (const auto& r : ev.rows) {
      if (!r.pred.feasible) md << "- " << row_label(r) << ": " << r.pred.oom << "\n";
    }
    md << "\n";
  }
  md << "## Time per token\n\n![time per token by strategy](time_per_token.svg)\n\n";
  if (!points.empty()) {
    md << "## Crossover: where partial offload loses to CPU-only\n\n![crossover](crossover.svg)\n\n";
    md << "| GPU budget (GiB) | auto offloads | auto (accelerate) | auto's map in-place | CPU-only | optimal |\n";
    md << "|---|---|---|---|---|---|\n";
    auto cell = [](double v) { return v < 0 ? std::string("OOM") : sim::format_seconds(v); };
    for (const auto& p : points) {
      md << "| " << fixed(static_cast<double>(p.budget) / kGiB, 1) << " | "
         << (p.auto_s < 0 ? std::string("-") : fixed(100 * p.auto_offloaded, 0) + "%") << " | " << cell(p.auto_s)
         << " | " << cell(p.in_place_s) << " | " << cell(p.cpu_s) << " | " << cell(p.optimal_s) << " |\n";
    }
    md << "\nBreak-even offloaded fraction (host-to-device / CPU memory bandwidth): "
       << fixed(100 * ev.break_even_fraction, 0) << "%.\n\n";
  }
  md << "## Memory per device\n\n![memory per device](memory.svg)\n\n";
  if (ev.recommended >= 0) {
    md << "## Recommended placement\n\n```json\n" << device_map_to_json(ev.rows[ev.recommended].map) << "\n```\n\n";
  }
  md << "## Figures used\n\n| figure | value | source |\n|---|---|---|\n";
  for (const auto& f : sim::figures(ev)) {
    md << "| " << f.name << " | " << fixed(f.value, 2) << " " << f.unit << " | " << sim::source_name(f.source)
       << " |\n";
  }
  md << "\nSemantics: *accelerate* = offloaded weights copied from pageable memory before every forward, one "
        "blocking copy per tensor (what transformers + accelerate do); *prefetch* = pinned memory, the next "
        "layer's copy overlapped with this layer's compute; *in-place* = CPU-mapped layers computed by the CPU "
        "(llama.cpp `-ngl`); *cpu* = everything on the CPU.\n";
  write_file(dir / "index.md", md.str(), written);
  return written;
}

}  // namespace dmap::report
