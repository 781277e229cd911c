// The executor's element types: weights and activations are float32, float16 or bfloat16, named
// by dmap::DType like everywhere else in dmap (the safetensors reader maps its file's element
// types to these at the file's edge, exec/weights.cpp). Shared by the CPU kernels, the device
// runtimes and the CUDA kernels (plain C++17: nvcc compiles it too).
#pragma once

#include <cstddef>

#include "core/dtype.h"

namespace dmap::exec {

inline bool is_exec_dtype(DType t) { return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16; }

// Bytes per element of an executor type.
inline size_t elt_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Throws dmap::InternalError (a bug: types are checked where files are read) naming `what` unless `t` is one of the
// executor's types.
void require_exec_dtype(DType t, const char* what);

}  // namespace dmap::exec
