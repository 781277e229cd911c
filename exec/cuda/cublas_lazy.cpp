// cuBLAS, loaded when first used.
//
// libcublas pulls in libcublasLt (≈540 MB), whose static initialisers cost ≈0.37 s of CPU per
// process (measured on the AMD EPYC VM: an empty program linked to libcublas runs in 0.37 s,
// one linked to libcudart in 0.002 s). Every `dmap simulate` of a CUDA build paid that, though
// only the GPU executor and profiler use cuBLAS. So dmap does not link libcublas: this file
// defines the handful of cuBLAS entry points dmap calls, and each forwards to the real one,
// resolved with dlopen/dlsym on first use. Call sites are unchanged (they include cublas_v2.h
// and call cublasCreate, cublasGemmEx, ... as usual).
//
// When the library cannot be loaded, cublasCreate returns CUBLAS_STATUS_NOT_INITIALIZED and
// cublasGetStatusString says which library failed to load and why.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <mutex>
#include <string>

namespace {

struct Cublas {
  void* lib = nullptr;
  std::string error;
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
  decltype(&cublasGetStatusName) status_name = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

template <typename F>
void resolve(Cublas& c, F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(c.lib, name));
  if (!fn && c.error.empty()) c.error = std::string(DMAP_CUBLAS_SONAME) + " has no symbol " + name;
}

const Cublas& cublas() {
  static Cublas c;
  static std::once_flag once;
  std::call_once(once, [] {
    c.lib = dlopen(DMAP_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!c.lib) c.lib = dlopen(DMAP_CUBLAS_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!c.lib) {
      const char* e = dlerror();
      c.error = std::string("cannot load ") + DMAP_CUBLAS_SONAME + ": " + (e ? e : "unknown error");
      return;
    }
    resolve(c, c.create, "cublasCreate_v2");
    resolve(c, c.destroy, "cublasDestroy_v2");
    resolve(c, c.set_stream, "cublasSetStream_v2");
    resolve(c, c.set_math_mode, "cublasSetMathMode");
    resolve(c, c.gemm_ex, "cublasGemmEx");
    resolve(c, c.status_name, "cublasGetStatusName");
    resolve(c, c.status_string, "cublasGetStatusString");
  });
  return c;
}

bool usable() { return cublas().error.empty(); }

}  // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  if (!usable()) return CUBLAS_STATUS_NOT_INITIALIZED;
  return cublas().create(handle);
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  if (!usable()) return CUBLAS_STATUS_NOT_INITIALIZED;
  return cublas().destroy(handle);
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!usable()) return CUBLAS_STATUS_NOT_INITIALIZED;
  return cublas().set_stream(handle, stream);
}

cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!usable()) return CUBLAS_STATUS_NOT_INITIALIZED;
  return cublas().set_math_mode(handle, mode);
}

cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                         int lda, const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                                         cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                         cublasGemmAlgo_t algo) {
  if (!usable()) return CUBLAS_STATUS_NOT_INITIALIZED;
  return cublas().gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
                          computeType, algo);
}

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
  if (!usable()) return "CUBLAS_STATUS_NOT_INITIALIZED";
  return cublas().status_name(status);
}

const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  if (!usable()) return cublas().error.c_str();
  return cublas().status_string(status);
}

}  // extern "C"
