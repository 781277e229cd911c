// Element sizes and dtype names.
#include "core/dtype.h"

#include <array>

namespace dmap {

Bits accelerate_bits_per_element(DType t) {
  switch (t) {
    case DType::kFloat64: return 64;
    case DType::kFloat32: return 32;
    case DType::kFloat16: return 16;
    case DType::kBFloat16: return 16;
    case DType::kFloat8: return 8;
    case DType::kInt64: return 64;
    case DType::kInt32: return 32;
    case DType::kInt16: return 16;
    case DType::kInt8: return 8;
    case DType::kUInt8: return 8;
    case DType::kInt4: return 4;
    case DType::kInt2: return 2;
    case DType::kBool: return 1;  // accelerate: bool is 1/8 byte
  }
  return 0;
}

Bits torch_bits_per_element(DType t) {
  if (t == DType::kBool) return 8;  // torch stores bool as one byte
  return accelerate_bits_per_element(t);
}

bool is_floating(DType t) {
  switch (t) {
    case DType::kFloat64:
    case DType::kFloat32:
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kFloat8: return true;
    default: return false;
  }
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kFloat64: return "float64";
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat8: return "float8";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kInt16: return "int16";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt4: return "int4";
    case DType::kInt2: return "int2";
    case DType::kBool: return "bool";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view text) {
  if (text.substr(0, 6) == "torch.") text.remove_prefix(6);
  struct Alias {
    std::string_view name;
    DType type;
  };
  static constexpr std::array<Alias, 30> kAliases = {{
      {"float64", DType::kFloat64},
      {"double", DType::kFloat64},
      {"fp64", DType::kFloat64},
      {"float32", DType::kFloat32},
      {"float", DType::kFloat32},
      {"fp32", DType::kFloat32},
      {"float16", DType::kFloat16},
      {"half", DType::kFloat16},
      {"fp16", DType::kFloat16},
      {"bfloat16", DType::kBFloat16},
      {"bf16", DType::kBFloat16},
      {"float8", DType::kFloat8},
      {"fp8", DType::kFloat8},
      {"float8_e4m3fn", DType::kFloat8},
      {"float8_e5m2", DType::kFloat8},
      {"float8_e4m3fnuz", DType::kFloat8},
      {"float8_e5m2fnuz", DType::kFloat8},
      {"int64", DType::kInt64},
      {"int32", DType::kInt32},
      {"int16", DType::kInt16},
      {"int8", DType::kInt8},
      {"8bit", DType::kInt8},
      {"uint8", DType::kUInt8},
      {"int4", DType::kInt4},
      {"4bit", DType::kInt4},
      {"int2", DType::kInt2},
      {"bool", DType::kBool},
      {"long", DType::kInt64},
      {"int", DType::kInt32},
      {"fp4", DType::kInt4},
  }};
  for (const Alias& a : kAliases) {
    if (a.name == text) return a.type;
  }
  return std::nullopt;
}

}  // namespace dmap
