// llama_probe: times llama.cpp (through its C API, llama.h) on a GGUF file, for dmap's
// llama.cpp runtime profile — or prints the logits it computes, to check that dmap's GGUF
// export runs in llama.cpp as it runs in dmap.
//
//   llama_probe MODEL.gguf --threads N --prompt P --new-tokens T --rounds R   (timing)
//   llama_probe MODEL.gguf --threads N --logits 1,2,3                          (one forward)
//   llama_probe --matvec bf16:2048:5632,f32:896:4864 --threads N --rounds R    (one-row products)
//   --out FILE: the JSON to FILE instead of stdout; --no-mmap: weights read into memory, not mapped
//
// --matvec TYPE:N:K,...: ggml_mul_mat of an N x K weight (f32, f16 or bf16; K the row length)
// and one float32 row, on the CPU backend llama.cpp's graphs run on (the same prebuilt library,
// N threads). Enough copies of the weight that together they pass 256 MiB are multiplied in one
// graph, so the weights stream from memory as a decode's do, not from the caches. Per shape: the
// median over R computes of the time per product, and the bytes it streamed per second.
//
// Timing, after one untimed warm-up round, per round: the KV cache cleared, a prefill of P token ids (one llama_decode, the
// batch as large as the prompt, as llama-bench's pp test), then T single-token decodes (as
// its tg test). Prints one JSON object on stdout: the llama.cpp build, the CPU backend's
// features, and per round the prefill seconds and the median decode seconds per token.
// Token ids are seeded and below the model's vocabulary; the file needs no tokenizer.
// CPU only: no layer is offloaded (n_gpu_layers 0) — the CPU runtime is what dmap predicts here.
//
// Built by CMake against the prebuilt llama.cpp of the npm package node-llama-cpp (pinned in
// probes/llama_cpp/package.json) with the headers of the llama.cpp source bundled in it; the
// CPU backends (one per ISA level) are loaded from DMAP_LLAMA_BIN_DIR, the package's folder.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "llama_probe: %s\n", what.c_str());
  std::exit(2);
}

long number(const char* flag, const char* v, long lo, long hi) {
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (!*v || *end || n < lo || n > hi) die(std::string(flag) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return n;
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Shape {
  ggml_type type;
  std::string name;
  int64_t n, k;
};

std::vector<Shape> parse_shapes(const std::string& spec) {
  std::vector<Shape> out;
  size_t p = 0;
  while (p < spec.size()) {
    const size_t q = std::min(spec.find(',', p), spec.size());
    const std::string item = spec.substr(p, q - p);
    const size_t a = item.find(':'), b = item.find(':', a == std::string::npos ? a : a + 1);
    if (a == std::string::npos || b == std::string::npos) die("--matvec: expected TYPE:N:K, not '" + item + "'");
    Shape s;
    s.name = item.substr(0, a);
    if (s.name == "f32") s.type = GGML_TYPE_F32;
    else if (s.name == "f16") s.type = GGML_TYPE_F16;
    else if (s.name == "bf16") s.type = GGML_TYPE_BF16;
    else die("--matvec: type f32, f16 or bf16, not '" + s.name + "'");
    s.n = number("--matvec N", item.substr(a + 1, b - a - 1).c_str(), 1, 1 << 22);
    s.k = number("--matvec K", item.substr(b + 1).c_str(), 1, 1 << 22);
    out.push_back(s);
    p = q + 1;
  }
  if (out.empty()) die("--matvec: no shapes");
  return out;
}

void run_matvec(const std::vector<Shape>& shapes, int threads, int rounds) {
  ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (!dev) die("no CPU backend in llama.cpp's libraries");
  ggml_backend_t be = ggml_backend_dev_init(dev, nullptr);
  if (!be) die("could not start the CPU backend");
  auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
      ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_backend_set_n_threads"));
  if (set_threads) set_threads(be, threads);
  std::printf("{\"llama_cpp\": \"%s\", \"system\": \"%s\", \"threads\": %d, \"matvec\": [", LLAMA_PROBE_VERSION,
              llama_print_system_info(), threads);
  uint64_t seed = 0x2545F4914F6CDD1Dull;
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    const size_t row = ggml_row_size(s.type, s.k);
    const size_t bytes = row * static_cast<size_t>(s.n);
    const int copies = static_cast<int>(std::clamp<size_t>((size_t{256} << 20) / bytes + 1, 1, 512));
    ggml_init_params ip{ggml_tensor_overhead() * static_cast<size_t>(2 * copies + 4) +
                            ggml_graph_overhead_custom(static_cast<size_t>(2 * copies + 4), false),
                        nullptr, true};
    ggml_context* ctx = ggml_init(ip);
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s.k, 1);
    std::vector<ggml_tensor*> w;
    ggml_cgraph* gf = ggml_new_graph_custom(ctx, static_cast<size_t>(2 * copies + 4), false);
    for (int c = 0; c < copies; ++c) {
      w.push_back(ggml_new_tensor_2d(ctx, s.type, s.k, s.n));
      ggml_build_forward_expand(gf, ggml_mul_mat(ctx, w.back(), x));
    }
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    if (!buf) die("could not allocate " + std::to_string(copies) + " weights of " + std::to_string(bytes) + " bytes");
    std::vector<float> v(static_cast<size_t>(s.k) * static_cast<size_t>(s.n));
    for (auto& f : v) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      f = static_cast<float>(static_cast<int64_t>(seed % 2001) - 1000) * 1e-4f;
    }
    std::vector<uint8_t> packed(bytes);
    if (s.type == GGML_TYPE_F32) std::memcpy(packed.data(), v.data(), bytes);
    if (s.type == GGML_TYPE_F16)
      ggml_fp32_to_fp16_row(v.data(), reinterpret_cast<ggml_fp16_t*>(packed.data()), static_cast<int64_t>(v.size()));
    if (s.type == GGML_TYPE_BF16)
      ggml_fp32_to_bf16_row(v.data(), reinterpret_cast<ggml_bf16_t*>(packed.data()), static_cast<int64_t>(v.size()));
    for (ggml_tensor* t : w) ggml_backend_tensor_set(t, packed.data(), 0, bytes);
    std::vector<float> xs(static_cast<size_t>(s.k), 0.01f);
    ggml_backend_tensor_set(x, xs.data(), 0, xs.size() * sizeof(float));
    std::vector<double> per;
    for (int r = -1; r < rounds; ++r) {  // one untimed compute first
      const auto t0 = std::chrono::steady_clock::now();
      if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) die("graph compute failed");
      if (r >= 0) per.push_back(seconds_since(t0) / copies);
    }
    std::sort(per.begin(), per.end());
    const double t = per[per.size() / 2];
    std::printf("%s{\"type\": \"%s\", \"n\": %lld, \"k\": %lld, \"bytes\": %zu, \"copies\": %d, \"s\": %.9g, \"gbs\": %.6g}",
                si ? ", " : "", s.name.c_str(), static_cast<long long>(s.n), static_cast<long long>(s.k), bytes, copies, t,
                static_cast<double>(bytes) / t / 1e9);
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
  }
  std::printf("]}\n");
  ggml_backend_free(be);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: llama_probe MODEL.gguf [--threads N] [--prompt P] [--new-tokens T] [--rounds R] [--logits IDS] | --matvec TYPE:N:K,...");
  const bool matvec = std::string(argv[1]) == "--matvec";
  const std::string path = matvec ? "" : argv[1];
  std::vector<Shape> shapes;
  if (matvec) {
    if (argc < 3) die("--matvec needs TYPE:N:K,...");
    shapes = parse_shapes(argv[2]);
  }
  int threads = 1, prompt = 64, new_tokens = 16, rounds = 3;
  std::vector<llama_token> logits_ids;
  bool verbose = false, no_mmap = false;
  for (int i = matvec ? 3 : 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--verbose") {
      verbose = true;
      continue;
    }
    if (a == "--no-mmap") {  // read the weights into memory (llama.cpp's --no-mmap) instead of mapping the file
      no_mmap = true;
      continue;
    }
    if (i + 1 >= argc) die(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--out") {
      if (!std::freopen(v, "w", stdout)) die(std::string("cannot write ") + v);
    } else if (a == "--threads") threads = static_cast<int>(number("--threads", v, 1, 1024));
    else if (a == "--prompt") prompt = static_cast<int>(number("--prompt", v, 1, 1 << 20));
    else if (a == "--new-tokens") new_tokens = static_cast<int>(number("--new-tokens", v, 1, 1 << 20));
    else if (a == "--rounds") rounds = static_cast<int>(number("--rounds", v, 1, 1000));
    else if (a == "--logits") {
      std::string s = v;
      size_t p = 0;
      while (p <= s.size()) {
        const size_t q = std::min(s.find(',', p), s.size());
        logits_ids.push_back(static_cast<llama_token>(number("--logits", s.substr(p, q - p).c_str(), 0, 1L << 30)));
        p = q + 1;
      }
    } else die("unknown option " + a);
  }
  if (!verbose) llama_log_set(quiet_log, nullptr);
#ifdef DMAP_LLAMA_BIN_DIR
  ggml_backend_load_all_from_path(DMAP_LLAMA_BIN_DIR);
#else
  ggml_backend_load_all();
#endif
  llama_backend_init();
  if (matvec) {
    run_matvec(shapes, threads, rounds);
    llama_backend_free();
    return 0;
  }
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  if (no_mmap) mp.load_mode = LLAMA_LOAD_MODE_NONE;
  mp.progress_callback = [](float, void*) { return true; };  // no progress dots on stderr
  llama_model* model = llama_model_load_from_file(path.c_str(), mp);
  if (!model) die(path + ": llama.cpp could not load this file");
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const int n_ctx_needed = logits_ids.empty() ? prompt + new_tokens : static_cast<int>(logits_ids.size());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_ctx_needed);
  cp.n_batch = static_cast<uint32_t>(std::max(n_ctx_needed, 1));
  cp.n_ubatch = cp.n_batch;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.no_perf = true;
  if (!logits_ids.empty()) {  // the check of dmap's export: a float32 KV cache (the default is f16)
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  }
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) die(path + ": llama.cpp could not make a context of " + std::to_string(n_ctx_needed) + " tokens");

  if (!logits_ids.empty()) {
    for (llama_token t : logits_ids) {
      if (t >= n_vocab) die("--logits: token " + std::to_string(t) + " is not below the vocabulary's " + std::to_string(n_vocab));
    }
    llama_batch b = llama_batch_get_one(logits_ids.data(), static_cast<int32_t>(logits_ids.size()));
    if (llama_decode(ctx, b) != 0) die("llama_decode failed");
    const float* l = llama_get_logits_ith(ctx, -1);
    std::printf("{\"logits\": [");
    for (int i = 0; i < n_vocab; ++i) std::printf("%s%.9g", i ? ", " : "", l[i]);
    std::printf("]}\n");
  } else {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    std::vector<llama_token> ids(static_cast<size_t>(prompt));
    for (auto& t : ids) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      t = static_cast<llama_token>(s % static_cast<uint64_t>(n_vocab));
    }
    std::printf("{\"llama_cpp\": \"%s\", \"system\": \"%s\", \"threads\": %d, \"prompt\": %d, \"new_tokens\": %d, \"rounds\": [",
                LLAMA_PROBE_VERSION, llama_print_system_info(), threads, prompt, new_tokens);
    // One untimed round first, as llama-bench's warm-up: the first touches every mapped weight
    // page (the file's pages faulted in from the page cache: twice the prefill on this VM).
    for (int r = -1; r < rounds; ++r) {
      llama_memory_clear(llama_get_memory(ctx), true);
      auto t0 = std::chrono::steady_clock::now();
      if (llama_decode(ctx, llama_batch_get_one(ids.data(), prompt)) != 0) die("llama_decode (prefill) failed");
      llama_synchronize(ctx);
      const double prefill = seconds_since(t0);
      std::vector<double> steps;
      llama_token next = ids.back();
      for (int k = 0; k < new_tokens; ++k) {
        t0 = std::chrono::steady_clock::now();
        if (llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) die("llama_decode (decode) failed");
        llama_synchronize(ctx);
        steps.push_back(seconds_since(t0));
        next = static_cast<llama_token>((next * 31 + 7) % n_vocab);
      }
      if (r < 0) continue;
      std::sort(steps.begin(), steps.end());
      std::printf("%s{\"prefill_s\": %.9g, \"decode_s\": %.9g}", r ? ", " : "", prefill, steps[steps.size() / 2]);
    }
    std::printf("]}\n");
  }
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
