// The llama.cpp runtime on this machine: probes/llama_cpp/llama_probe (llama.cpp's C API, the
// prebuilt CPU libraries of node-llama-cpp) run on a GGUF file dmap exported (exec/gguf_export.h),
// its timings or logits read back.
//
// Data flow: ModelWeights --export_gguf--> FILE.gguf --llama_probe--> JSON (per round: prefill
//            seconds, median decode seconds per token; or the last position's logits)
//            --parse_llama_probe--> LlamaProbe
//
// Example:
//   const LlamaProbe p = run_llama_probe({find_llama_probe(), "tiny.gguf", 2, 64, 16, 3, "/tmp"});
//   double step = p.decode();   // median over rounds
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dmap::profile {

struct LlamaRound {
  double prefill_s = 0, decode_s = 0;
};

struct LlamaProbe {
  std::string version, system;  // the llama.cpp build; its CPU backend's features
  int threads = 0;
  int64_t prompt = 0, new_tokens = 0;
  std::vector<LlamaRound> rounds;
  double prefill() const;  // medians over rounds
  double decode() const;
};

// Reads the probe's timing JSON; InputError naming `origin` when it is not what the probe writes.
LlamaProbe parse_llama_probe(const std::string& json, const std::string& origin);

// The probe program: $DMAP_LLAMA_PROBE, else the one built with dmap. RuntimeFailure saying how
// to get it (scripts/setup.sh installs node-llama-cpp and the build makes the probe) otherwise.
std::string find_llama_probe();
// Whether a probe is there (tests skip without one).
bool llama_probe_available();

struct LlamaProbeOptions {
  std::string probe;  // find_llama_probe()
  std::string gguf;
  int threads = 1;
  int64_t prompt = 64, new_tokens = 16;
  int rounds = 3;
  std::string scratch_dir;  // where the JSON goes ("" = the system's temporary folder)
  bool no_mmap = false;     // llama.cpp's --no-mmap: the weights read into memory, not mapped
};
// Runs the probe (its stderr passes through) and reads its JSON. RuntimeFailure when it fails.
LlamaProbe run_llama_probe(const LlamaProbeOptions& opt);

// One-row products timed in llama.cpp's CPU backend (llama_probe --matvec): per shape the
// seconds per product and the weight bytes streamed per second.
struct LlamaMatvec {
  std::string type;  // "f32", "f16", "bf16"
  int64_t n = 0, k = 0;
  double seconds = 0, gbs = 0;
};
struct LlamaMatvecShape {
  std::string type;
  int64_t n = 0, k = 0;
};
std::vector<LlamaMatvec> run_llama_matvec(const std::string& probe, const std::vector<LlamaMatvecShape>& shapes,
                                          int threads, int rounds, const std::string& scratch_dir = "");

// The logits llama.cpp computes at the last of `ids` in one forward (float32 KV cache, no flash
// attention: the check that an export runs in llama.cpp as in dmap).
std::vector<float> llama_logits(const std::string& probe, const std::string& gguf, const std::vector<int32_t>& ids,
                                const std::string& scratch_dir = "");

}  // namespace dmap::profile
