// The quantized-kernel traffic table (see quant_cost.h for where each figure comes from).
#include "sim/quant_cost.h"

namespace dmap::sim {

DequantFigure default_dequant(QuantMethod method, bool gpu) {
  // {decode bytes per weight, prefill bytes per weight, extra kernels}
  switch (method) {
    case QuantMethod::kBnb4bit: return gpu ? DequantFigure{0, 4, 1} : DequantFigure{4, 4, 1};
    case QuantMethod::kBnb8bit: return gpu ? DequantFigure{0, 0, 6} : DequantFigure{4, 4, 6};
    case QuantMethod::kGptq:
    case QuantMethod::kAwq: return gpu ? DequantFigure{0, 0, 0} : DequantFigure{10, 10, 8};
    case QuantMethod::kFp8:
    case QuantMethod::kFbgemmFp8:
    case QuantMethod::kCompressedTensors:
    case QuantMethod::kMxfp4: return gpu ? DequantFigure{0, 0, 1} : DequantFigure{4, 4, 1};
  }
  return {};
}

DequantFigure dequant_figure(const std::map<std::string, DequantFigure>& preset, QuantMethod method, bool gpu) {
  auto it = preset.find(quant_method_key(method));
  return it != preset.end() ? it->second : default_dequant(method, gpu);
}

bool dequantized_on(const QuantizationConfig& q, double gpu0_capability) {
  if (q.dequantize || !q.pre_quantized || gpu0_capability < 0) return q.dequantize;
  if (q.method == QuantMethod::kFp8) return gpu0_capability < 8.9;
  if (q.method == QuantMethod::kMxfp4) return gpu0_capability < 7.5;
  return false;
}

}  // namespace dmap::sim
