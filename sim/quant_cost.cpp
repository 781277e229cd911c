// The quantized-kernel traffic table (see quant_cost.h for where each figure comes from).
#include "sim/quant_cost.h"

namespace dmap::sim {

QuantKernel quant_kernel(QuantMethod method, bool gpu, bool prefill) {
  switch (method) {
    case QuantMethod::kBnb4bit:
      if (gpu) return {prefill ? 4.0 : 0.0, 1};
      return {4.0, 1};
    case QuantMethod::kBnb8bit:
      return {gpu ? 0.0 : 4.0, 6};
    case QuantMethod::kGptq:
    case QuantMethod::kAwq:
      if (gpu) return {0.0, 0};
      return {10.0, 8};
    case QuantMethod::kFp8:
    case QuantMethod::kFbgemmFp8:
    case QuantMethod::kCompressedTensors:
    case QuantMethod::kMxfp4:
      if (gpu) return {0.0, 1};
      return {4.0, 1};
  }
  return {};
}

bool dequantized_on(const QuantizationConfig& q, double gpu0_capability) {
  if (q.dequantize || !q.pre_quantized || gpu0_capability < 0) return q.dequantize;
  if (q.method == QuantMethod::kFp8) return gpu0_capability < 8.9;
  if (q.method == QuantMethod::kMxfp4) return gpu0_capability < 7.5;
  return false;
}

}  // namespace dmap::sim
