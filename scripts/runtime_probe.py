#!/usr/bin/python3
"""The transformers runtime probe of `dmap profile --real --runtime transformers` and
`dmap profile --validate --runtime transformers`: times PyTorch eager running a model the way
transformers' eager forward does, on this machine's CPU, and prints one JSON document.

The model is scripts/make_fixtures.py's plain-PyTorch implementation of transformers v5's eager
forward (every dense family dmap executes: embedding, RMSNorm in float32, q/k/v/o projections,
RoPE computed per forward, a KV cache grown by torch.cat as DynamicCache does, eager attention,
the gated MLP, the head of the last position), built from the model's config with seeded random
weights at its real shapes. transformers itself is not used: Debian has no package of it, and the
probe never downloads anything. What runs is said in the output ("implementation").

Per dtype and repetition: the prefill of a random prompt, then greedy decode token by token
(each forward timed alone; "loop" is the time between forwards: argmax and the next input), under
torch.inference_mode with a fixed thread count. A second, tiny model of the same family and layer
count (hidden 64) decodes `--tiny-steps` tokens: its step is almost all per-operator overhead.
With `--disk-layers N`, the run's minor page faults per decode step are recorded, and what a
load_offloaded_weight costs per byte is timed apart ("offload_rates": the copy into warm pages, and
a fresh page's cost: see offload_rates); "glibc_keeps_freed" says whether glibc ran keeping what
it frees (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 in the environment: the copies then
land on warm pages). With `--matvec N:K,...`, per dtype each one-row product F.linear(x[1, 1, K],
W[N, K]) is timed the way the model calls it: enough copies of W to pass 256 MiB multiplied in turn (the weights stream
from memory as a decode's do, not from the caches), the median over `2 x reps + 1` passes of the
time per product.

Usage (dmap runs it with the model YAML it resolved):
  /usr/bin/python3 scripts/runtime_probe.py --model configs/models/tinyllama_1b.yaml \
      --dtypes float32,bfloat16 --threads 2 --prompt 64 --new-tokens 12 --reps 3 --out probe.json \
      [--matvec 2048:2048,5632:2048]
Needs Debian's python3-torch (apt-get install python3-torch).
"""
import argparse
import json
import mmap
import os
import resource
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the plain-PyTorch forward)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_config(path):
    with open(path) as f:
        text = f.read()
    try:
        c = json.loads(text)  # config.json (PyYAML would read 1e-05 as a string)
    except ValueError:
        import yaml  # a dmap model YAML

        c = yaml.safe_load(text)
    for key in ("name", "checkpoint"):  # dmap's own keys in its model YAML files
        c.pop(key, None)
    if isinstance(c.get("text_config"), dict):  # a multimodal checkpoint: its text stack
        c = dict(c["text_config"], model_type=c["text_config"].get("model_type", c["model_type"]))
    return normalise(c)


def normalise(c):
    """The keys Model reads, from a transformers v4 or v5 config."""
    c = dict(c)
    f = c["model_type"]
    if f not in ("llama", "mistral", "qwen2", "gemma", "qwen3", "olmo2", "phi3", "gemma2", "gemma3_text"):
        raise SystemExit(f"runtime_probe: model_type {f} is not one the probe runs")
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    if not c.get("head_dim"):
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    c.setdefault("tie_word_embeddings", f in ("gemma", "gemma2", "gemma3_text"))
    c.setdefault("rms_norm_eps", 1e-6)
    rp = c.get("rope_parameters") or {}
    theta = c.get("rope_theta") or rp.get("rope_theta") or 10000.0
    c["rope_theta"] = theta
    if f in ("qwen3",):
        c["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    rs = c.get("rope_scaling")
    if f in mf.OLD_FAMILIES and rs and rs.get("rope_type", rs.get("type")) != "llama3":
        c["rope_scaling"] = None  # the probe times; linear/dynamic scaling changes no cost
    if f == "gemma3_text":
        c["rope_scaling"] = {"factor": (rs or {}).get("factor", 1.0)}
        c.setdefault("rope_local_base_freq", 10000.0)
        c.setdefault("sliding_window_pattern", 6)
    if f in ("gemma2", "gemma3_text"):
        c.setdefault("query_pre_attn_scalar", c["head_dim"])
    if f == "phi3" and not c.get("rope_scaling"):
        raise SystemExit("runtime_probe: phi3 without longrope is not one the probe runs")
    if f == "mistral" or f == "qwen2":
        c.setdefault("sliding_window", None)
        if f == "qwen2" and not c.get("use_sliding_window"):
            c["sliding_window"] = None
    return c


def blas_in_use():
    """The BLAS library this process mapped (Debian's torch takes whatever libblas.so.3 points
    to: the reference BLAS runs float32 products tens of times slower than OpenBLAS)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "blas" in os.path.basename(path).lower():
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return ", ".join(sorted(libs)) or "none mapped"


def tiny_of(c):
    """The same family and layer count at tiny shapes (the per-operator overhead probe)."""
    t = dict(c)
    t.update(hidden_size=64, intermediate_size=96, num_attention_heads=4, vocab_size=128)
    t["num_key_value_heads"] = min(4, c["num_key_value_heads"])
    t["head_dim"] = 16
    if c["model_type"] in ("gemma2", "gemma3_text"):
        t["query_pre_attn_scalar"] = 16
    if c["model_type"] == "phi3":
        half = int(16 * c.get("partial_rotary_factor", 1.0)) // 2
        rs = dict(c["rope_scaling"])
        rs["short_factor"], rs["long_factor"] = [1.0] * half, [1.0] * half
        t["rope_scaling"] = rs
    return t


def time_matvec(shapes, dtype, passes, pool_bytes=256 << 20):
    """Seconds per one-row product of each N x K weight: copies of it past `pool_bytes`, each
    multiplied once per pass by one row, the median over `passes` timed passes (one untimed first)."""
    elt = torch.empty(0, dtype=dtype).element_size()
    out = []
    for n, k in shapes:
        copies = max(1, -(-pool_bytes // (n * k * elt)))
        ws = [torch.empty(n, k).uniform_(-0.05, 0.05).to(dtype) for _ in range(copies)]
        x = torch.empty(1, 1, k).uniform_(-1.0, 1.0).to(dtype)
        times = []
        with torch.inference_mode():
            for p in range(passes + 1):
                t0 = time.perf_counter()
                for w in ws:
                    F.linear(x, w)
                dt = (time.perf_counter() - t0) / copies
                if p:
                    times.append(dt)
        out.append({"n": n, "k": k, "seconds": statistics.median(times)})
        del ws
    return out


def offload_weight(t, name, folder):
    """accelerate.utils.offload_weight: the tensor as a raw .dat file (bfloat16 stored as int16); its index entry."""
    dtype = None
    if t.dtype == torch.bfloat16:
        t, dtype = t.view(torch.int16), "bfloat16"
    array = t.numpy()
    f = np.memmap(os.path.join(folder, f"{name}.dat"), dtype=array.dtype, mode="w+", shape=array.shape)
    f[:] = array[:]
    f.flush()
    return {"dtype": dtype or str(array.dtype), "shape": list(array.shape)}


def load_offloaded_weight(path, info):
    """accelerate.utils.load_offloaded_weight: a memory map of the file copied into a new tensor."""
    dtype = "int16" if info["dtype"] == "bfloat16" else info["dtype"]
    w = torch.tensor(np.memmap(path, dtype=dtype, shape=tuple(info["shape"]), mode="r"))
    return w.view(torch.bfloat16) if info["dtype"] == "bfloat16" else w


def offload_rates(folder, mib=64, reps=5):
    """What a load_offloaded_weight costs per byte on this machine, in two parts: a `mib` MiB file
    warm in the page cache copied out of a fresh memory map into memory already touched (warm
    pages: the copy's rate) and into freshly mapped anonymous memory, unmapped after (what glibc
    hands out for a tensor of 32 MiB or more, and after it has trimmed its heap: each page faulted
    and zeroed on first touch, returned at the free); a fresh 4 KiB page costs the difference per
    page. Medians of `reps`; the minor faults of each for the record."""
    path = os.path.join(folder, "offload_rate.dat")
    n = mib * 2**20 // 2
    f = np.memmap(path, dtype=np.int16, mode="w+", shape=(n,))
    f[:] = 1
    f.flush()
    del f
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass
    dst = torch.empty(n, dtype=torch.int16)
    dst.zero_()

    def source():
        with warnings.catch_warnings():  # a read-only memory map: only read here
            warnings.simplefilter("ignore")
            return torch.from_numpy(np.memmap(path, dtype=np.int16, mode="r", shape=(n,)))

    fresh, warm, fresh_faults, warm_faults = [], [], [], []
    for _ in range(reps):
        f0, t0 = minor_faults(), time.perf_counter()
        dst.copy_(source())
        warm.append(time.perf_counter() - t0)
        warm_faults.append(minor_faults() - f0)
        f0, t0 = minor_faults(), time.perf_counter()
        anon = mmap.mmap(-1, 2 * n)
        t = torch.frombuffer(anon, dtype=torch.int16)
        t.copy_(source())
        del t
        anon.close()
        fresh.append(time.perf_counter() - t0)
        fresh_faults.append(minor_faults() - f0)
    os.remove(path)
    b = 2.0 * n
    tf, tw = statistics.median(fresh), statistics.median(warm)
    return {"bytes": b, "copy_gbs": b / tw / 1e9, "fresh_page_us": max(0.0, (tf - tw) / (b / 4096) * 1e6),
            "fresh_s": tf, "warm_s": tw, "fresh_faults": statistics.median(fresh_faults),
            "warm_faults": statistics.median(warm_faults)}


def glibc_keeps_freed():
    """Whether glibc was told, through its tunables in our environment, to keep what it frees: no
    block mapped afresh (MALLOC_MMAP_MAX_=0) and its heap never trimmed (MALLOC_TRIM_THRESHOLD_ of
    4 GiB or more). dmap's fit and validation run the probe both ways."""
    try:
        trim = int(os.environ.get("MALLOC_TRIM_THRESHOLD_", "0"))
    except ValueError:
        trim = 0
    return os.environ.get("MALLOC_MMAP_MAX_") == "0" and trim >= 1 << 32


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class DiskOffloaded(dict):
    """The model's weights with the last `layers` decoder layers offloaded to `folder` (see the
    module's docstring): the forward reads them through this mapping, and a layer's first access
    loads all of its tensors (AlignDevicesHook.pre_forward on the layer module), dropping the
    previous layer's (post_forward sets them back to the meta device)."""

    def __init__(self, w, c, layers, folder):
        super().__init__()
        first = c["num_hidden_layers"] - layers
        self.folder, self.index, self.loaded, self.layer = folder, {}, {}, None
        for name, t in w.items():
            if name.startswith("model.layers.") and int(name.split(".")[2]) >= first:
                self.index[name] = offload_weight(t, name, folder)
            else:
                dict.__setitem__(self, name, t)
        with open(os.path.join(folder, "index.json"), "w") as f:
            json.dump(self.index, f, indent=2)
        for name in self.index:  # written back now: no writeback under a timed run
            fd = os.open(os.path.join(folder, f"{name}.dat"), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _enter(self, layer):
        self.loaded, self.layer = {}, layer
        prefix = f"model.layers.{layer}."
        for name, info in self.index.items():
            if name.startswith(prefix):
                self.loaded[name] = load_offloaded_weight(os.path.join(self.folder, f"{name}.dat"), info)

    def __getitem__(self, key):
        if key in self.index:
            layer = int(key.split(".")[2])
            if layer != self.layer:
                self._enter(layer)
            return self.loaded[key]
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        return key in self.index or dict.__contains__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def end_forward(self):
        """The last offloaded layer's post_forward."""
        self.loaded, self.layer = {}, None

    def evict(self):
        """Every offloaded file out of the page cache: the next forward reads them from disk."""
        self.end_forward()
        for name in self.index:
            fd = os.open(os.path.join(self.folder, f"{name}.dat"), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def parse_shapes(text):
    shapes = []
    for item in filter(None, text.split(",")):
        try:
            n, k = (int(v) for v in item.split(":"))
        except ValueError:
            raise SystemExit(f"runtime_probe: --matvec expects N:K pairs, found '{item}'")
        if n < 1 or k < 1:
            raise SystemExit(f"runtime_probe: --matvec shape '{item}' must be positive")
        shapes.append((n, k))
    return shapes


def generate(model, c, prompt_len, new_tokens, seed):
    """Prefill, then greedy decode; seconds of the prefill, of each decode forward, of each loop,
    the minor page faults of each decode forward, and of the prefill."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, c["vocab_size"], (prompt_len,), generator=g)
    offloaded = model.w if isinstance(model.w, DiskOffloaded) else None
    if offloaded:
        offloaded.evict()  # a cold start: the prefill reads the offloaded layers from disk
    f_pre = minor_faults()
    t0 = time.perf_counter()
    logits = model.forward(ids, 0)
    if offloaded:
        offloaded.end_forward()
    prefill = time.perf_counter() - t0
    prefill_faults = minor_faults() - f_pre
    steps, loops, faults = [], [], []
    for step in range(new_tokens - 1):
        t1 = time.perf_counter()
        nxt = torch.tensor([int(torch.argmax(logits))])
        f0 = minor_faults()
        t2 = time.perf_counter()
        logits = model.forward(nxt, prompt_len + step)
        if offloaded:
            offloaded.end_forward()
        t3 = time.perf_counter()
        faults.append(minor_faults() - f0)
        loops.append(t2 - t1)
        steps.append(t3 - t2)
    return prefill, steps, loops, faults, prefill_faults


def unsupported_dtypes(names):
    """The dtypes this PyTorch cannot compute a forward's operators in on the CPU, each with the
    first line of its error (Debian's torch 1.13: float16 products are not implemented on the CPU)."""
    bad = {}
    for name in names:
        dt = DTYPES[name]
        try:
            x = torch.ones(2, 8, dtype=dt)
            y = torch.nn.functional.linear(x, torch.ones(4, 8, dtype=dt))
            torch.softmax(torch.matmul(x, x.t()), -1)
            torch.nn.functional.silu(y) * y
            torch.rsqrt(y.float().pow(2).mean(-1, keepdim=True)).to(dt)
        except RuntimeError as e:
            bad[name] = (str(e).splitlines() or ["unsupported"])[0]
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a dmap model YAML or a config.json")
    ap.add_argument("--check-dtypes", default="",
                    help="only check which of these dtypes PyTorch computes in on the CPU: writes "
                         '{"torch": version, "unsupported": {dtype: error}} to --out')
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=12)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiny-steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--matvec", default="", help="N:K,... one-row product shapes to time per dtype")
    ap.add_argument("--disk-layers", type=int, default=0, help="the last N decoder layers offloaded to disk")
    ap.add_argument("--offload-dir", default="", help="where the offloaded layers' files go (with --disk-layers)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.check_dtypes:
        names = args.check_dtypes.split(",")
        for name in names:
            if name not in DTYPES:
                raise SystemExit(f"runtime_probe: --check-dtypes: {name!r} is not one of {', '.join(DTYPES)}")
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "unsupported": unsupported_dtypes(names)}, f, indent=1)
        return
    if not args.model:
        raise SystemExit("runtime_probe: --model is required")
    if args.new_tokens < 2 or args.prompt < 1 or args.reps < 1 or args.threads < 1:
        raise SystemExit("runtime_probe: --prompt >= 1, --new-tokens >= 2, --reps >= 1, --threads >= 1")
    if args.disk_layers < 0 or (args.disk_layers and not os.path.isdir(args.offload_dir)):
        raise SystemExit("runtime_probe: --disk-layers N >= 0 needs --offload-dir, an existing folder")
    torch.set_num_threads(args.threads)
    shapes = parse_shapes(args.matvec)
    c = load_config(args.model)
    out = {"torch": torch.__version__, "threads": args.threads, "prompt": args.prompt,
           "new_tokens": args.new_tokens, "model_type": c["model_type"], "disk_layers": args.disk_layers,
           "glibc_keeps_freed": glibc_keeps_freed(),
           "implementation": "plain PyTorch eager with transformers' op structure (scripts/make_fixtures.py's "
                             "forward; transformers not importable or not used)",
           "runs": []}
    for name in args.dtypes.split(","):
        dtype = DTYPES[name]
        w = mf.make_weights(c, dtype, args.seed)
        if args.disk_layers:
            if args.disk_layers > c["num_hidden_layers"]:
                raise SystemExit(f"runtime_probe: --disk-layers {args.disk_layers} exceeds the model's "
                                 f"{c['num_hidden_layers']} layers")
            folder = os.path.join(args.offload_dir, name)
            os.makedirs(folder, exist_ok=True)
            w = DiskOffloaded(w, c, args.disk_layers, folder)
        m = mf.Model(c, w, dtype)
        pre, dec, loop, flt, pre_flt = [], [], [], [], []
        with torch.inference_mode():
            generate(m, c, min(8, args.prompt), 3, args.seed)  # warm-up: allocator, kernels' first calls
            for r in range(args.reps):
                p, steps, loops, faults, pf = generate(m, c, args.prompt, args.new_tokens, args.seed + 1 + r)
                pre_flt.append(pf)
                pre.append(p)
                dec.append(statistics.mean(steps))
                loop.append(statistics.mean(loops))
                flt.append(statistics.median(faults))
        del m, w
        tc = tiny_of(c)
        tw = mf.make_weights(tc, dtype, args.seed)
        tm = mf.Model(tc, tw, dtype)
        tiny = []
        with torch.inference_mode():
            generate(tm, tc, 4, 3, args.seed)
            for r in range(args.reps):
                _, steps, _, _, _ = generate(tm, tc, 4, args.tiny_steps, args.seed + 1 + r)
                tiny.append(statistics.median(steps))
        del tm, tw
        run = {"dtype": name, "prefill_s": pre, "decode_token_s": dec, "loop_s": loop,
               "tiny_decode_token_s": tiny, "decode_minor_faults": flt,
               "prefill_minor_faults": pre_flt}
        if shapes:
            run["matvec"] = time_matvec(shapes, dtype, 2 * args.reps + 1)
        out["runs"].append(run)
    out["implementation"] += "; BLAS: " + blas_in_use()
    if args.disk_layers:
        out["offload_rates"] = offload_rates(args.offload_dir)
        out["implementation"] += ("; the last %d layers offloaded to disk as accelerate offloads them (.dat files, "
                                  "loaded per layer by load_offloaded_weight)" % args.disk_layers)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
