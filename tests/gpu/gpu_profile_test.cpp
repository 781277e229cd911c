// The GPU profiler (profile/gpu_profile.h) on a real device: a quick calibration of the llama
// fixture's shapes gives figures in sane ranges, merges into a loadable calibration, and a GPU
// validation case (the map's layers split between the GPU and the CPU) runs and is predicted.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "core/model_spec.h"
#include "profile/gpu_profile.h"
#include "profile/profile.h"
#include "sim/calibration.h"
#include "sim/hardware.h"

using namespace dmap;
using namespace dmap::profile;

TEST_CASE("a quick GPU calibration gives sane figures and a loadable calibration", "[gpu][profile]") {
  // DMAP_SOURCE_DIR in the environment: a build carried to a GPU machine finds the fixtures there.
  const char* env = std::getenv("DMAP_SOURCE_DIR");
  const std::string src = env ? env : DMAP_SOURCE_DIR;
  const ModelSpec spec = load_model_spec(src + "/tests/data/llama_float32/config.json");
  const sim::Hardware hw = sim::parse_hardware(YAML::Node("h200_vm"), "test", src + "/configs/hardware");
  GpuProfileOptions go;
  go.model = spec;
  go.model_id = "llama_float32 fixture";
  go.dtypes = {DType::kFloat32, DType::kBFloat16};
  go.run.prompt = 16;
  go.run.new_tokens = 4;
  go.run.threads = 2;
  go.quick = true;
  const GpuProfile g = profile_gpu(go, hw);
  CHECK(!g.gpu_name.empty());
  CHECK(g.offload_tensor_overhead_us >= 0);
  CHECK(g.offload_tensor_overhead_us < 1e5);

  ProfileOptions opt;
  opt.model = spec;
  opt.model_id = "llama_float32 fixture";
  opt.dtypes = go.dtypes;
  opt.run = go.run;
  opt.run.threads = 1;
  opt.quick = true;
  opt.command = "gpu_profile_test";
  opt.gpu = &g;
  const ProfileResult r = profile_cpu(opt, hw);
  const sim::Calibration cal = sim::parse_calibration(r.yaml, "gpu quick");
  const sim::Rates rates = sim::make_rates(hw, &cal);
  REQUIRE(rates.gpus.size() == 1);
  const sim::DeviceRates& d = rates.gpus[0];
  // Any GPU this runs on: 50 GB/s .. 20 TB/s memory, 0.5 .. 500 GB/s host links, launches under 1 ms.
  CHECK(d.memory_bandwidth.source == sim::Source::kCalibrated);
  CHECK(d.memory_bandwidth.value > 50e9);
  CHECK(d.memory_bandwidth.value < 20e12);
  CHECK(d.dispatch.value >= 0);
  CHECK(d.dispatch.value < 1e-3);
  for (const double bw :
       {rates.h2d_pinned.value, rates.h2d_pageable.value, rates.d2h_pinned.value, rates.d2h_pageable.value}) {
    CHECK(bw > 0.5e9);
    CHECK(bw < 500e9);
  }
  CHECK(rates.h2d_pinned.source == sim::Source::kCalibrated);
  for (DType t : go.dtypes) {
    CHECK(d.flops_for(t).source == sim::Source::kCalibrated);
    CHECK(d.attention_flops_for(t).source == sim::Source::kCalibrated);
    for (const auto& [m, v] : d.flops_for(t).points) {
      CHECK(v > 1e9);
      CHECK(v < 1e16);
    }
  }

  // A GPU placement validated: half the layers on the GPU, the rest streamed (prefetch).
  ValidationCase c;
  c.model_id = "llama_float32 fixture";
  c.spec = spec;
  c.dtype = DType::kFloat32;
  DeviceMap dm;
  dm.assign("model.embed_tokens", Device::gpu(0));
  dm.assign("model.layers.0", Device::gpu(0));
  dm.assign("model.layers.1", Device::cpu());
  dm.assign("model.norm", Device::gpu(0));
  dm.assign("lm_head", Device::gpu(0));
  c.map = dm;
  c.backend = "cuda";
  c.semantics = exec::Semantics::kPrefetch;
  c.placement = "gpu + cpu, prefetch";
  ValidationSettings vs;
  vs.rounds = 1;
  vs.quiet.max_wait_s = 0;
  const ValidationResult v = validate({c}, hw, cal, opt.run, vs, {});
  REQUIRE(v.rows.size() == 1);
  CHECK(v.rows[0].measured_decode_s > 0);
  CHECK(v.rows[0].predicted_decode_s > 0);
}
