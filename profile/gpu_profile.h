// `dmap profile --real --device cuda:N`: the GPU and link half of a calibration, measured with
// dmap's CUDA executor and its kernels. Built only with the CUDA backend (DMAP_HAVE_CUDA).
//
// Data flow:
//   copies host<->device, pageable and pinned, 64 KiB .. 256 MiB  --fit_line--> link bandwidths, copy latency
//   cudaMalloc + pageable copy + cudaFree per tensor (accelerate's hook) - the fitted copy
//                                                                 --median--> offload_tensor_overhead_us
//   matrix-vector products at the model's shapes (cuBLAS, M = 1)  --fit_line--> GPU memory bandwidth
//   matrix products, M = 16 .. 4096, per dtype                    --median-->  matmul_tflops curve
//   attention kernel, decode over contexts / prefill over prompts --fit_line--> attention_tflops, attention_overhead_us
//   back-to-back launches of a tiny kernel                         --> launch probe (reported)
//   whole-model runs all on the GPU (CudaModel), per dtype         --least squares--> launch_overhead_us
//   one offloaded run (accelerate semantics), traced with CUPTI    --> GpuTrace (Chrome JSON beside the YAML)
//   --> YAML sections `gpus:` and `link:`, host.offload_tensor_overhead_us, fit residuals; the CPU
//       profiler (profile_cpu) writes them into the same calibration file.
//
// Example:
//   GpuProfile g = profile_gpu(opt, hw);   // hw: the machine with this GPU (sim::Hardware)
//   cpu_opt.gpu = &g;                      // merged into the calibration profile_cpu writes
#pragma once

#include <string>
#include <vector>

#include "profile/profile.h"

namespace dmap::profile {

struct GpuProfileOptions {
  int device = 0;
  ModelSpec model;
  std::string model_id;
  std::vector<DType> dtypes;  // float32 / float16 / bfloat16
  RunSettings run;            // whole-model runs (prompt, new tokens, host threads)
  bool quick = false;
  ProgressFn progress;
};

struct GpuProfile : GpuSections {
  GpuTrace trace;  // the traced offloaded run (empty without CUPTI)
  std::vector<std::string> summary;
};

// RuntimeFailure when the device does not exist or CUDA fails.
GpuProfile profile_gpu(const GpuProfileOptions& opt, const sim::Hardware& hw);

}  // namespace dmap::profile
