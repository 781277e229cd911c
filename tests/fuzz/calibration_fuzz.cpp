// libFuzzer target: a calibration file (`dmap profile --real` output, `--calibration FILE`),
// loaded and turned into the cost model's rates for a shipped system preset.
#include <cstdint>

#include "sim/calibration.h"
#include "sim/hardware.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dmap::sim::Hardware hw =
      dmap::sim::parse_hardware(YAML::Node("desktop_rtx3060"), "fuzz", DMAP_SOURCE_DIR "/configs/hardware");
  const std::string path = dmap::fuzz::input_file(data, size, "calibration.yaml");
  return dmap::fuzz::accept_or_refuse([&] {
    const dmap::sim::Calibration cal = dmap::sim::load_calibration(path);
    (void)dmap::sim::make_rates(hw, &cal);
  });
}
