#!/usr/bin/env python3
"""Writes synthetic_2layer.gpu.json: a hand-made dmap GPU trace (format "dmap-gpu-trace",
version 1) of a 2-layer model on one H200, prefill + 2 decode steps. See README.md.

Every duration below is a round number so that tests/trace/gpu_trace_test.cpp can check the
aggregates by hand. The output is in the exact layout gpu_trace_json() writes (one record per
line, compact JSON), so parse -> write reproduces the file byte for byte.

  python3 tests/data/traces/make_synthetic_trace.py > tests/data/traces/synthetic_2layer.gpu.json
"""
import json

BASE = 1_715_000_000_000_000_000  # CUPTI timestamps are ns on the host's clock
PID, TID = 41237, 2747271232      # CUPTI thread id = low 32 bits of pthread_self()
S_MAIN, S_COPY = 7, 13            # the legacy default stream, a copy stream

mods, corrs, hosts, acts = [], [], [], []
h = 0                              # host cursor, ns after BASE
s = {S_MAIN: 0, S_COPY: 0}         # per-stream cursor
corr = 0
ext = None


def push(module, step):
    global ext
    ext = len(mods) + 1
    mods.append({"id": ext, "module": module, "step": step})


def pop():
    global ext
    ext = None


def runtime(name, start, end):
    global corr
    corr += 1
    if ext is not None:
        corrs.append((corr, ext))
    acts.append({"kind": "runtime", "name": name, "start_ns": BASE + start, "end_ns": BASE + end,
                 "correlation": corr, "process_id": PID, "thread_id": TID})
    return corr


def gpu(kind, start, end, c, stream, **kw):
    a = {"kind": kind}
    if "name" in kw:
        a["name"] = kw.pop("name")
    a.update({"start_ns": BASE + start, "end_ns": BASE + end, "correlation": c, "device": 0,
              "context": 1, "stream": stream})
    a.update(kw)
    acts.append(a)


def launch(name, dur, grid, block, shared):
    global h
    c = runtime("cudaLaunchKernel", h, h + 4000)
    start = max(h + 6000, s[S_MAIN])
    gpu("kernel", start, start + dur, c, S_MAIN, name=name, grid=grid, block=block, shared_bytes=shared)
    s[S_MAIN] = start + dur
    h += 5000


def memset_async(nbytes, dur):
    global h
    c = runtime("cudaMemsetAsync", h, h + 4000)
    start = max(h + 6000, s[S_MAIN])
    gpu("memset", start, start + dur, c, S_MAIN, bytes=nbytes, dst_kind="device")
    s[S_MAIN] = start + dur
    h += 5000


def memcpy_blocking(copy_kind, nbytes, dur, src, dst):
    global h
    start = max(h + 3000, s[S_MAIN])
    end = start + dur
    c = runtime("cudaMemcpy", h, end + 2000)
    gpu("memcpy", start, end, c, S_MAIN, bytes=nbytes, copy_kind=copy_kind, src_kind=src, dst_kind=dst)
    s[S_MAIN] = end
    h = end + 3000


def memcpy_async_copy_stream(nbytes, dur):
    global h
    c = runtime("cudaMemcpyAsync", h, h + 5000)
    start = max(h + 6000, s[S_COPY])
    gpu("memcpy", start, start + dur, c, S_COPY, bytes=nbytes, copy_kind="HtoD", src_kind="pinned", dst_kind="device")
    s[S_COPY] = start + dur
    h += 6000


def wait_copy_stream():
    global h
    runtime("cudaStreamWaitEvent", h, h + 2000)  # no GPU record of its own
    s[S_MAIN] = max(s[S_MAIN], s[S_COPY])
    h += 3000


def host_range(module, step, dur):
    global h
    hosts.append({"module": module, "step": step, "start_ns": BASE + h, "end_ns": BASE + h + dur, "thread_id": TID})
    h += dur + 1000


MiB = 1 << 20
for step in (-1, 0, 1):
    pre = step < 0
    if pre:  # input ids, copied before the forward: outside any module
        memcpy_blocking("HtoD", 512, 3000, "pageable", "device")
    push("model.embed_tokens", step)
    launch("embedding_kernel", 5000 if pre else 3000, [16, 1, 1], [256, 1, 1], 0)
    pop()
    if step == 1:  # layer 1 prefetched (pinned, copy stream) while layer 0 computes
        push("model.layers.1", step)
        memcpy_async_copy_stream(96 * MiB, 2097152)
        pop()
    push("model.layers.0", step)
    if pre:
        memset_async(1 * MiB, 4000)  # KV cache cleared
    launch("attention_kernel", 50000 if pre else 12000, [32, 16, 1], [128, 1, 1], 49152)
    launch("gemm_mlp_kernel", 60000 if pre else 9000, [64, 8, 1], [256, 1, 1], 65536)
    pop()
    push("model.layers.1", step)
    if step == 1:
        wait_copy_stream()
    else:  # accelerate: pageable, one blocking copy per tensor, before every forward
        memcpy_blocking("HtoD", 32 * MiB, 2097152, "pageable", "device")
        memcpy_blocking("HtoD", 64 * MiB, 4194304, "pageable", "device")
    launch("attention_kernel", 50000 if pre else 12000, [32, 16, 1], [128, 1, 1], 49152)
    launch("gemm_mlp_kernel", 60000 if pre else 9000, [64, 8, 1], [256, 1, 1], 65536)
    pop()
    push("lm_head", step)  # computed in place by the CPU backend: hidden state copied back
    memcpy_blocking("DtoH", 4096, 3000, "device", "pageable")
    pop()
    host_range("lm_head", step, 700000 if pre else 650000)


def line(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


def section(key, items, last=False):
    out = json.dumps(key) + ": ["
    out += "".join(("\n" if i == 0 else ",\n") + it for i, it in enumerate(items))
    out += "]" if not items else "\n]"
    return out + ("\n" if last else ",\n")


prov = {"source": "synthetic", "dmap_version": "0.1.0", "driver_version": "13.0", "runtime_version": "13.0",
        "cupti_version": "130001",
        "note": "hand-made fixture (tests/data/traces/make_synthetic_trace.py); replace with a recorded trace",
        "devices": [{"id": 0, "name": "NVIDIA H200"}]}
out = '{"format": "dmap-gpu-trace", "version": 1,\n'
out += '"provenance": ' + line(prov) + ",\n"
out += '"dropped_records": 0,\n'
out += section("modules", [line(m) for m in mods])
out += section("correlations", ["[%d, %d]" % p for p in sorted(corrs)])
out += section("host_ranges", [line(x) for x in hosts])
out += section("activities", [line(a) for a in acts], last=True)
out += "}\n"
print(out, end="")
