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
//   matvec_gbs,        llama.cpp's own one-row products (llama_probe --matvec: ggml_mul_mat in its
//   matvec_row_ns      CPU backend) over a grid of shapes — the model's own, rows of 512 to
//                      16 384 elements, 8 M weights as 1 024 to 16 384 rows: time = intercept +
//                      bytes / gbs + rows x row_ns (robust fit, as dmap's own stream fit). Measured
//                      on the AMD EPYC VM, the sum of a model's products so priced came within
//                      -8 to +6 % of its decode step read into memory (three models, float32)
//   load, mapped_factor per dtype, the model's decode with the file mapped (llama.cpp's default)
//                      over the same read into memory (--no-mmap); the profile predicts, and dmap
//                      advises, --no-mmap in each dtype where that is over 5 % faster (the same VM:
//                      float32 1.3-2.0x, its mapped runs scattered by up to 1.6x between rounds;
//                      bfloat16 and float16 within 5 %); a dtype not measured takes the median's mode
//   matvec_efficiency  scales that rate until the CPU-only decode step (in the load mode chosen)
//                      is predicted exactly: the whole model's residual
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
#include "profile/reference_bracket.h"
#include "profile/runtime_fit.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

namespace dmap::profile {

struct LlamaRun {
  DType dtype = DType::kFloat32;
  LlamaProbe model, tiny;
  LlamaProbe no_mmap;               // the model again with llama.cpp's --no-mmap (empty: not run)
  std::vector<LlamaMatvec> matvec;  // llama.cpp's one-row products over a grid of shapes (empty: not run)
  // In a fit, the model's decode (s/token) in each of several llama.cpp processes spread over the
  // fit, mapped and under --no-mmap (`model` and `no_mmap` are the first of them): the fit takes
  // their median (the EPYC VM's memory runs 20-45 % slower for minutes at a time, and one
  // refit's float32 decode was 114 ms/token against 78 in every validation round). Empty:
  // `model` and `no_mmap` alone.
  std::vector<double> model_decodes, no_mmap_decodes;
  // With a ReferenceBracket: the probe's ratio around each timed session of the model (mapped and
  // read in, in order) and around the one-row products; their decode times and products are then
  // referred to calibration time (at_calibration_time), prefill and the tiny model's times are not
  // (compute and per-operator costs, which the memory probe does not track).
  std::vector<double> probe_ratios;
};

// The GGUF type a dtype is exported as (float32 F32, float16 F16, bfloat16 BF16).
GgufFileType gguf_type_of(DType d);

// Exports and times the model and (with `tiny`) its tiny twin per dtype (`rounds` rounds each;
// the scratch .gguf files are removed); with `tiny`, the model also under --no-mmap, both in
// kLlamaFitSessions processes taking turns with the other dtypes', and llama.cpp's one-row
// products over a grid of shapes (what a profile fits). Without `tiny`, the
// model alone, under --no-mmap when `no_mmap` (a validation of a no-mmap profile).
// A fit given `bracket` times each model session and the products within it and refers their
// decode times to calibration time (LlamaRun::probe_ratios). RuntimeFailure when the probe fails.
constexpr int kLlamaFitSessions = 3;
std::vector<LlamaRun> measure_llama(const ModelSpec& spec, const std::vector<DType>& dtypes, const RunSettings& run,
                                    const std::string& probe, int rounds, bool tiny = true, bool no_mmap = false,
                                    ReferenceBracket* bracket = nullptr);

// llama.cpp's timed products as the shared fit reads them (runtime_fit.h).
std::vector<MatvecSample> matvec_samples(const std::vector<LlamaMatvec>& timed);

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
