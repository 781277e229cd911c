// What a quantized linear layer costs beyond reading its packed weights: the memory traffic of
// dequantising them and the extra kernels, per method, on a GPU and on the CPU, in decode (one
// row per sequence) and prefill. A traffic model, not a fitted one: each figure follows from
// what the method's kernels do (below); all are estimates until a calibration measures them.
//
//   op time = max(flops / rate, (packed bytes + extra_bytes_per_weight x weights + activations)
//                               / bandwidth) + (1 + extra_kernels) x dispatch
//
// GPU
//   bitsandbytes 4-bit  decode: gemv_4bit dequantises in registers (0 extra bytes); prefill:
//                       dequantize_4bit writes the fp16 weight and the GEMM reads it back (+4 B
//                       per weight); 1 extra kernel (quant-state handling).
//   LLM.int8 (8-bit)    per call: activation quantisation, outlier extraction, igemmlt, mm_dequant,
//                       an fp16 product of the outlier columns and the add (+6 kernels); at batch 1
//                       these small kernels dominate, which is why LLM.int8 is slower than fp16
//                       there (dmap models the launches, not the outliers' count).
//   GPTQ / AWQ          fused dequant-GEMM kernels (Marlin, ExLlama, AWQ gemm): 0 extra bytes.
//   FP8 (fp8, fbgemm, compressed-tensors)   w8a8 kernels read fp8 weights; +1 kernel to quantise
//                       the activations.
//   MXFP4               triton matmul reads the packed experts; +1 kernel.
// CPU (transformers eager; no fused kernels)
//   bitsandbytes        dequantises to the compute dtype every call, then a BF16 GEMM reads it: +4 B
//                       per weight (+6 kernels for LLM.int8's decomposition, +1 for 4-bit).
//   GPTQ / AWQ          gptqmodel's torch kernels unpack int32 words with shifts, subtract zeros,
//                       multiply scales, into full-size temporaries: about five passes of 2 B, +10
//                       B per weight; +8 kernels.
//   FP8 / MXFP4         a pre-quantized checkpoint without a capable GPU is dequantized while
//                       loading (the tree is unquantized); on the CPU of a GPU machine the weight is
//                       upcast each call: +4 B per weight, +1 kernel.
#pragma once

#include "core/quantization.h"
#include "sim/hardware.h"

namespace dmap::sim {

// The estimate above for a method on a GPU or the CPU (Source::kEstimate).
DequantFigure default_dequant(QuantMethod method, bool gpu);

// The device's figure: its preset's `dequant` entry for the method, else the estimate.
DequantFigure dequant_figure(const std::map<std::string, DequantFigure>& preset, QuantMethod method, bool gpu);

// Whether transformers dequantizes a pre-quantized checkpoint while loading on this machine:
// FP8 (fp8) without a GPU of compute capability >= 8.9, MXFP4 without one >= 7.5 (its
// validate_environment); `gpu0_capability` is 0 when there is no GPU, and nullopt-like < 0 when
// unknown (then the quantized path is assumed).
bool dequantized_on(const QuantizationConfig& q, double gpu0_capability);

}  // namespace dmap::sim
