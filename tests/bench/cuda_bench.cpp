// GPU measurements for docs/PERFORMANCE.md (run on a CUDA machine; scripts/device/run_gpu_suite.sh):
//   cuda_bench copies            host->device from pageable and from pinned memory by copy size,
//                                device->device (the HBM figure for the decode roofline)
//   cuda_bench gemm H I V M ...  cuBLAS (cublasGemmEx, bf16, float32 compute) at a Llama layer's
//                                shapes (hidden H, intermediate I, vocab V) for M tokens: TFLOP/s
// Output: one JSON object per line (median of repeated timings; CUDA events on one stream,
// host clocks for pageable copies, which the driver stages synchronously).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "exec/cuda/kernels.h"
#include "exec/cuda/runtime.h"

using namespace dmap::exec::cuda;
using dmap::DType;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int copies() {
  const int reps = 7;
  Stream st(0);
  DeviceBuffer dev(0, size_t{1} << 30, "copy target");
  DeviceBuffer dev2(0, size_t{1} << 30, "copy source");
  PinnedBuffer pinned(size_t{1} << 30);
  std::vector<uint8_t> pageable(size_t{1} << 30, 1);
  std::memset(pinned.data(), 1, pinned.bytes());
  Event a(0), b(0);
  for (size_t bytes = size_t{64} << 10; bytes <= (size_t{1} << 30); bytes *= 4) {
    std::vector<double> pin_s, page_s, d2d_s;
    for (int r = 0; r < reps + 1; ++r) {
      a.record(st.get());
      DMAP_CUDA(cudaMemcpyAsync(dev.data(), pinned.data(), bytes, cudaMemcpyHostToDevice, st.get()));
      b.record(st.get());
      st.sync();
      if (r > 0) pin_s.push_back(b.since(a) / 1e3);
      const auto t0 = std::chrono::steady_clock::now();
      DMAP_CUDA(cudaMemcpyAsync(dev.data(), pageable.data(), bytes, cudaMemcpyHostToDevice, st.get()));
      st.sync();
      if (r > 0) page_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      a.record(st.get());
      DMAP_CUDA(cudaMemcpyAsync(dev.data(), dev2.data(), bytes, cudaMemcpyDeviceToDevice, st.get()));
      b.record(st.get());
      st.sync();
      if (r > 0) d2d_s.push_back(b.since(a) / 1e3);
    }
    const double mb = static_cast<double>(bytes) / 1e6;
    std::printf(
        "{\"bench\":\"copy\",\"bytes\":%zu,\"h2d_pinned_gbs\":%.3f,\"h2d_pageable_gbs\":%.3f,"
        "\"d2d_copy_gbs\":%.3f,\"d2d_traffic_gbs\":%.3f,\"h2d_pinned_us\":%.2f,\"h2d_pageable_us\":%.2f}\n",
        bytes, mb / 1e3 / median(pin_s), mb / 1e3 / median(page_s), mb / 1e3 / median(d2d_s),
        2 * mb / 1e3 / median(d2d_s), median(pin_s) * 1e6, median(page_s) * 1e6);
  }
  return 0;
}

int gemm_shapes(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: cuda_bench gemm HIDDEN INTER VOCAB M [M...]\n");
    return 2;
  }
  const int64_t H = std::atoll(argv[2]), I = std::atoll(argv[3]), V = std::atoll(argv[4]);
  cublasHandle_t blas;
  DMAP_CUBLAS(cublasCreate(&blas));
  Stream st(0);
  DMAP_CUBLAS(cublasSetStream(blas, st.get()));
  Event a(0), b(0);
  for (int i = 5; i < argc; ++i) {
    const int64_t M = std::atoll(argv[i]);
    for (auto [name, K, N] : {std::tuple{"hidden->inter", H, I}, std::tuple{"inter->hidden", I, H},
                              std::tuple{"hidden->hidden", H, H}, std::tuple{"hidden->vocab", H, V}}) {
      DeviceBuffer x(0, static_cast<size_t>(M * K) * 2, "x"), w(0, static_cast<size_t>(N * K) * 2, "w"),
          y(0, static_cast<size_t>(M * N) * 2, "y");
      DMAP_CUDA(cudaMemset(x.data(), 0x3c, x.bytes()));  // small bf16 values, not zeros
      DMAP_CUDA(cudaMemset(w.data(), 0x3c, w.bytes()));
      std::vector<double> s;
      for (int r = 0; r < 12; ++r) {
        a.record(st.get());
        gemm(blas, DType::kBFloat16, x.data(), M, K, w.data(), N, y.data(), false);
        b.record(st.get());
        st.sync();
        if (r >= 2) s.push_back(b.since(a) / 1e3);
      }
      const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(K) * static_cast<double>(N);
      std::printf(
          "{\"bench\":\"gemm\",\"shape\":\"%s\",\"M\":%lld,\"K\":%lld,\"N\":%lld,\"us\":%.2f,\"tflops\":%.2f}\n", name,
          static_cast<long long>(M), static_cast<long long>(K), static_cast<long long>(N), median(s) * 1e6,
          flops / median(s) / 1e12);
    }
  }
  cublasDestroy(blas);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (device_count() == 0) {
    std::fprintf(stderr, "cuda_bench: no usable CUDA device\n");
    return 1;
  }
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "copies") return copies();
    if (mode == "gemm") return gemm_shapes(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_bench: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: cuda_bench copies | gemm HIDDEN INTER VOCAB M [M...]\n");
  return 2;
}
