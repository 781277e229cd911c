// Element types and their sizes, following accelerate's `dtype_byte_size` (docs/ACCELERATE.md §1.1)
// and torch's `element_size()` (transformers v5 sizing, §1.3).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/units.h"

namespace dmap {

enum class DType {
  kFloat64,
  kFloat32,
  kFloat16,
  kBFloat16,
  kFloat8,  // any torch float8 type (e4m3fn, e5m2, ...): 1 byte
  kInt64,
  kInt32,
  kInt16,
  kInt8,
  kUInt8,
  kInt4,  // accelerate CustomDtype.INT4: 1/2 byte
  kInt2,  // accelerate CustomDtype.INT2: 1/4 byte
  kBool,
};

// Size of one element under accelerate's rule: bool = 1 bit, int4 = 4 bits, int2 = 2 bits.
Bits accelerate_bits_per_element(DType t);

// Size of one element as torch's element_size() reports it (bool = 1 byte). For the
// packed sub-byte types a quantizer reports, it is the packed size (int4 = 4 bits).
Bits torch_bits_per_element(DType t);

// Floating types are the ones accelerate converts to the requested dtype.
bool is_floating(DType t);

// Canonical name: "float32", "bfloat16", "int4", "bool", ...
std::string_view dtype_name(DType t);

// Accepts canonical names, a "torch." prefix, and the usual aliases (fp32, fp16, half,
// bf16, float, fp8, float8_e4m3fn, float8_e5m2, 4bit, 8bit). nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view text);

}  // namespace dmap
