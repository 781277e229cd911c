// The llama.cpp runtime's profile on this machine: the model (random weights at its shapes) and
// a tiny model of the same family and layer count exported as GGUF in each dtype, timed by
// llama.cpp (profile/llama_probe.h), and the llama.cpp profile of sim/runtime.h fitted against
// dmap's calibration of the same machine (hardware rates are shared; the profile says what
// llama.cpp's kernels make of them).
//
// Data flow: ModelSpec --ExecConfig, ModelWeights::random, export_gguf (float32 -> F32,
//            bfloat16 -> BF16, float16 -> F16)--> scratch .gguf --llama_probe--> LlamaRun per
//            dtype --fit_llama_profile (+ base Calibration)--> RuntimeProfile + self-check rows
//
// The fit, per dtype (as fit_torch_profile's):
//   op_overhead_us     the tiny model's decode step (hidden 64: almost all graph overhead —
//                      building and scheduling ggml's graph, thread barriers) over the
//                      operators the cost model counts in one decode step; the least over dtypes
//   step_overhead_us   0: llama_decode's per-call cost is in the tiny step, charged per operator
//   matvec_efficiency  scales the calibration's one-row product rate until the CPU-only decode
//                      step is predicted exactly
//   matmul_efficiency  the same for M >= 2 and the prefill (one llama_decode of the prompt)
//
// Example:
//   const auto runs = measure_llama(spec, {DType::kFloat32}, settings, find_llama_probe(), 3);
//   const LlamaFit f = fit_llama_profile(spec, hw, base_calibration, runs);
#pragma once

#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"
#include "core/model_spec.h"
#include "profile/llama_probe.h"
#include "profile/profile.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

namespace dmap::profile {

struct LlamaRun {
  DType dtype = DType::kFloat32;
  LlamaProbe model, tiny;
  LlamaProbe no_mmap;  // the model again with llama.cpp's --no-mmap (recorded, not fitted; empty: not run)
};

// The GGUF type a dtype is exported as (float32 F32, float16 F16, bfloat16 BF16).
GgufFileType gguf_type_of(DType d);

// Exports and times the model and (with `tiny`) its tiny twin per dtype (`rounds` rounds each;
// the scratch .gguf files are removed); with `tiny`, the model also under --no-mmap (what the
// mapped file costs, reported beside the fit). RuntimeFailure when the probe fails.
std::vector<LlamaRun> measure_llama(const ModelSpec& spec, const std::vector<DType>& dtypes, const RunSettings& run,
                                    const std::string& probe, int rounds, bool tiny = true);

struct LlamaFit {
  sim::RuntimeProfile profile;
  double kernels_per_step = 0;
  std::vector<SelfCheckRow> self_check;  // the probe's CPU-only runs, predicted with the profile
  std::vector<std::string> summary;
  YAML::Node fit;
};
LlamaFit fit_llama_profile(const ModelSpec& spec, const sim::Hardware& hw, const sim::Calibration& base,
                           const std::vector<LlamaRun>& runs);

}  // namespace dmap::profile
