// A kernel for cupti_test: something to launch inside a pushed module.
#include <cuda_runtime.h>

namespace dmap_test {

__global__ void fill_kernel(float* out, int n, float v) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = v;
}

// out: [n] device floats; grid = ceil(n / 256) blocks of 256 threads on the legacy default stream.
cudaError_t launch_fill(float* out, int n, float v) {
  fill_kernel<<<(n + 255) / 256, 256>>>(out, n, v);
  return cudaGetLastError();
}

}  // namespace dmap_test
