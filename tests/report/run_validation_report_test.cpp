// `dmap run`'s table and JSON, and the validation report, from hand-made inputs: every figure the
// caller gives appears, computed figures (medians, tokens/s, errors) are right, optional parts
// appear only when there is something to show.
#include <catch2/catch.hpp>

#include <string>

#include "core/json_parse.h"
#include "report/run_report.h"
#include "report/validation_report.h"

using namespace dmap::report;

namespace {

double number(const dmap::JsonValue* v) {
  REQUIRE(v != nullptr);
  return v->is_int() ? static_cast<double>(v->i) : v->d;
}

RunReport dense_run() {
  RunReport r;
  r.model = "tiny";
  r.family = "llama";
  r.weights = "random";
  r.dtype = "bfloat16";
  r.placement = "all on the CPU";
  r.backend = "cpu";
  r.semantics = "cpu";
  r.executor = "CPU";
  r.batch = 2;
  r.prompt_tokens = 4;
  r.new_tokens = 4;
  r.threads = 2;
  r.isa = "avx2";
  r.tokens = {{5, 6, 7, 8}, {5, 6, 7, 9}};
  r.prefill_s = 0.25;
  r.decode_s = {0.010, 0.030, 0.020};  // median 20 ms: 2 sequences -> 100 tokens/s
  r.device_map_json = R"({"":"cpu"})";
  r.modules = {{"model.embed_tokens", "cpu", 0.001, 0.0005}, {"model.layers.0", "disk", 0.2, 0.015}};
  return r;
}

}  // namespace

TEST_CASE("run report: the table and the JSON carry the run's figures", "[unit][report]") {
  RunReport r = dense_run();
  const std::string table = run_report_table(r);
  CHECK(table.find("decode:     20.00 ms/token (median of 3 steps), 100.00 tokens/s") != std::string::npos);
  CHECK(table.find("tokens[1]: 5 6 7 9\n") != std::string::npos);
  CHECK(table.find("model.layers.0                               disk") != std::string::npos);
  CHECK(table.find("experts:") == std::string::npos);
  CHECK(table.find("disk:") == std::string::npos);

  const auto doc = dmap::parse_json(run_report_json(r), "run.json");
  CHECK(number(doc.find("decode_token_s")) == Approx(0.020));
  CHECK(number(doc.find("tokens_per_s")) == Approx(100.0));
  CHECK(doc.find("experts_touched") == nullptr);
  CHECK(doc.find("modules")->items.size() == 2);

  r.disk_bytes_read = 3'000'000;
  r.decode_disk_read_s = 0.0125;
  r.experts = 8;
  r.top_k = 2;
  r.prefill_experts = {2, 6.0, 5.0, 6.10, 0.5};
  r.decode_experts = {6, 2.0, 1.0, 2.0, std::nullopt};
  const std::string moe = run_report_table(r);
  CHECK(moe.find("disk:       3.00 MB read; decode spent 12.50 ms/token (mean) copying") != std::string::npos);
  CHECK(moe.find("experts:    8 routed, 2 per token; touched per sparse layer: prefill 6.00 (uniform routing: 6.10 "
                 "for 5 tokens; sequence spread 0.500), decode 2.00 (uniform: 2.00)") != std::string::npos);
  const auto moe_doc = dmap::parse_json(run_report_json(r), "run.json");
  CHECK(number(moe_doc.find("decode_disk_read_s")) == Approx(0.0125));
  REQUIRE(moe_doc.find("experts_touched") != nullptr);
  CHECK(moe_doc.find("experts_touched")->find("prefill")->find("uniform")->d == Approx(6.10));
  CHECK(moe_doc.find("experts_touched")->find("prefill")->find("sequence_spread")->d == Approx(0.5));
  CHECK(moe_doc.find("experts_touched")->find("decode")->find("sequence_spread") == nullptr);
}

TEST_CASE("validation report: rows, errors, held-out figures and regrets", "[unit][report]") {
  ValidationTable t;
  t.name = "amd";
  t.machine = "AMD EPYC, 2 CPUs";
  t.calibration_file = "configs/calibrations/amd.yaml";
  t.svg_name = "amd.svg";
  t.trace_name = "amd.trace.json";
  t.prompt = 64;
  t.new_tokens = 8;
  t.threads = 2;
  t.rounds = 3;
  ValidationTableRow a;
  a.model_id = "tinyllama_1b";
  a.dtype = "float32";
  a.placement = "cpu";
  a.in_fit = true;
  a.predicted_prefill_s = 1.1;
  a.measured_prefill_s = 1.0;
  a.predicted_decode_s = 0.090;
  a.measured_decode_s = 0.100;
  a.decode_rounds = {0.1, 0.1, 0.1};
  ValidationTableRow b = a;
  b.placement = "disk 11/22 layers";
  b.in_fit = false;
  b.predicted_decode_disk_s = 0.072;
  b.decode_disk_rounds = {0.115, 0.118};
  t.rows = {a, b};
  t.regrets = {{"tinyllama_1b float32", "cpu", "cpu", 0.0}};
  t.decode_median_abs = 0.1;
  const std::string md = validation_markdown(t);
  CHECK(md.find("# Validation: predicted vs measured, AMD EPYC, 2 CPUs") != std::string::npos);
  CHECK(md.find("| tinyllama_1b | float32 | cpu (in the fit) | 1100 ms | 1000 ms | +10 % | 90 | 100 | -10 % |") !=
        std::string::npos);
  CHECK(md.find("72 / 115, 118") != std::string::npos);
  CHECK(md.find("Error figures over the 1 placements") != std::string::npos);
  CHECK(md.find("| tinyllama_1b float32 | cpu | cpu | 0 % |") != std::string::npos);
  CHECK(md.find("![predicted vs measured](amd.svg)") != std::string::npos);
  CHECK(md.find("machine vs calibration") == std::string::npos);
  CHECK(md.find("holds no reference probe time") != std::string::npos);
  CHECK(md.find("Routed experts touched") == std::string::npos);  // a dense model: no experts table
  {
    ValidationTable moe = t;
    ValidationTableRow e = b;
    e.model_id = "qwen3_moe";
    e.placement = "experts of 1/3 layers on disk, batch 4";
    e.prefill_routed = 256;
    e.measured_prefill_touched = e.predicted_prefill_touched = 8;
    e.decode_routed = 4;
    e.measured_decode_touched = 5.45;
    e.predicted_decode_touched = 5.4688;
    moe.rows.push_back(e);
    moe.routing.push_back({"qwen3_moe", "probe", 0.9, 0.59, 4, 5.2, 64, 75.5, 3, 118, 0.0044});
    moe.routing.push_back({"other", "calibration", 1, 0.5});
    const std::string mmd = validation_markdown(moe);
    CHECK(mmd.find("| qwen3_moe | float32 | experts of 1/3 layers on disk, batch 4 | 256 | 8 | 8 | "
                   "4 | 5.45 | 5.47 |") != std::string::npos);
    CHECK(mmd.find("- qwen3_moe: s = 0.9, q = 0.59, fitted to a routing probe's counts on prompts of its own (not "
                   "the validation's), both figures at once (least squares on their logarithms; rms 0.44 %): a "
                   "decode step of 4 sequences touched 5.2 experts per forward, one sequence's 64-token prefill "
                   "75.5 (the mean over 3 prompts), 4 sequences' prefill 118.") != std::string::npos);
    CHECK(mmd.find("- other: s = 1, q = 0.5, the calibration's `moe` section.") != std::string::npos);
  }

  // Probed: the machine's state per row, the scaled error, and how many rows were steady.
  t.probed = true;
  t.rows[0].probe_ratio = 1.01;
  t.rows[0].probe_ratios = {1.01, 1.0, 1.05};
  t.rows[0].steady_rounds = 2;
  t.rows[0].scaled_decode_error = 0.09 * 1.01 / 0.1 - 1;
  t.rows[1].probe_ratio = 1.2;
  t.rows[1].probe_ratios = {1.2, 1.2};
  t.rows[1].steady_rounds = 0;
  t.rows[1].scaled_decode_error = 0.08;
  t.held_out = 1;
  t.steady_rows = 0;
  t.steady_tries = 10;
  t.moved_limit = 0.06;
  t.moved = 3;
  t.scaled_decode_median_abs = 0.08;
  const std::string probed = validation_markdown(t);
  CHECK(probed.find("| machine vs calibration, per round | steady | error, scaled |") != std::string::npos);
  CHECK(probed.find("| -10 % | +20 %, +20 % | 0/2 | +8 % |") != std::string::npos);
  CHECK(probed.find("| +1 %, +0 %, +5 % | 2/3 |") != std::string::npos);
  CHECK(probed.find("up to 10 times") != std::string::npos);
  CHECK(probed.find("more than 6 % (the machine changed speed during it)") != std::string::npos);
  CHECK(probed.find("(3 were)") != std::string::npos);
  CHECK(probed.find("| time per output token, scaled by the probe | 8 % |") != std::string::npos);
  CHECK(probed.find("0 of 1 held-out placements were, in at least one round.") != std::string::npos);
  CHECK(probed.find("more passes") == std::string::npos);  // no extra rounds: not mentioned
  t.extra_rounds = 3;
  t.extra_measurements = 4;
  CHECK(validation_markdown(t).find("up to 3 more passes measured again only the placements") != std::string::npos);
  CHECK(validation_markdown(t).find("4 extra measurements") != std::string::npos);
  const std::string svg = validation_svg(t);
  CHECK(svg.find("Predicted vs measured time per output token, amd") != std::string::npos);
  CHECK(svg.find("-10%") != std::string::npos);
}
