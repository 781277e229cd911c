// libFuzzer target for the strict safetensors reader: any input must either parse into tensors
// that lie inside the buffer or raise InputError — never crash, hang or read out of bounds.
// Build and run: tests/fuzz/run_safetensors_fuzz.sh [seconds]  (clang, -fsanitize=fuzzer,address,undefined)
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "exec/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = dmap::exec::SafetensorsFile::parse(reinterpret_cast<const std::byte*>(data), size, "fuzz");
    for (const auto& t : f->tensors()) {
      const auto* begin = reinterpret_cast<const std::byte*>(data);
      if (t.data < begin || t.data + t.bytes > begin + size) std::abort();
    }
  } catch (const dmap::InputError&) {
  }
  return 0;
}
