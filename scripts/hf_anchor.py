#!/usr/bin/env python3
"""Anchor measurements: real Hugging Face transformers + accelerate runs of the placements dmap
predicts and executes, on a CUDA machine (torch, transformers, accelerate; no downloads).

For one model config (a dmap model YAML, i.e. config.json fields, or a config.json) it builds the
model with seeded random weights, saves it once as safetensors in a scratch folder, and for each
GPU-0 cap loads it the way users do, from_pretrained(device_map="auto", max_memory={0: cap,
"cpu": ...}, offload_folder=...), so accelerate computes the map and attaches its hooks. It times
prefill of a random prompt and greedy decode token by token (torch.cuda.synchronize around each
step), and writes one JSON document: versions, the GPU, and per cap the device map (hf_device_map,
ready for `dmap run --device-map`), prefill seconds, per-token decode seconds and the tokens.
"cpu" as a cap runs device_map="cpu" (PyTorch on the host's cores).

Usage (scripts/device/run_gpu_suite.sh calls it):
  python3 scripts/hf_anchor.py --model configs/models/llama31_8b.yaml --dtype bfloat16 \
      --caps 4GiB,8GiB,12GiB,cpu --prompt-tokens 128 --new-tokens 8 --out anchors.json --maps-dir maps/
"""
import argparse
import json
import os
import shutil
import statistics
import tempfile
import time


def load_config(path):
    import yaml  # config.json is YAML too

    with open(path) as f:
        cfg = yaml.safe_load(f)
    for key in ("name", "checkpoint"):  # dmap's own keys in its model YAML files
        cfg.pop(key, None)
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--caps", default="4GiB,8GiB,12GiB,cpu")
    ap.add_argument("--cpu-cap", default="100GiB")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scratch", default=None, help="where the random checkpoint and offload folder go")
    ap.add_argument("--out", required=True)
    ap.add_argument("--maps-dir", default=None)
    args = ap.parse_args()

    import accelerate
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(torch, args.dtype)
    cfg_dict = load_config(args.model)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    scratch = args.scratch or tempfile.mkdtemp(prefix="dmap_anchor_")
    ckpt = os.path.join(scratch, "checkpoint")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype)
    model.save_pretrained(ckpt, max_shard_size="4GB")
    del model
    build_s = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(args.seed + 1)
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), generator=gen)
    out = {
        "format": "dmap-hf-anchor",
        "version": 1,
        "model": args.model,
        "dtype": args.dtype,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "build_checkpoint_s": build_s,
        "runs": [],
    }
    for cap in args.caps.split(","):
        offload = os.path.join(scratch, "offload")
        shutil.rmtree(offload, ignore_errors=True)
        t0 = time.perf_counter()
        if cap == "cpu":
            model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=dtype, device_map="cpu")
        else:
            model = AutoModelForCausalLM.from_pretrained(
                ckpt, torch_dtype=dtype, device_map="auto", max_memory={0: cap, "cpu": args.cpu_cap},
                offload_folder=offload)
        load_s = time.perf_counter() - t0
        model.eval()
        device_map = getattr(model, "hf_device_map", {"": "cpu"})
        first = next(iter(model.parameters())).device if cap == "cpu" else torch.device("cuda:0")
        ids = prompt.to(first)

        def sync():
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        with torch.inference_mode():
            model(ids[:, :8], use_cache=True)  # warm-up: kernels, allocator, hooks
            sync()
            t0 = time.perf_counter()
            res = model(ids, use_cache=True)
            sync()
            prefill_s = time.perf_counter() - t0
            past = res.past_key_values
            tok = res.logits[:, -1].argmax(-1, keepdim=True)
            tokens = [int(tok)]
            decode_s = []
            for _ in range(args.new_tokens - 1):
                t0 = time.perf_counter()
                res = model(tok, past_key_values=past, use_cache=True)
                sync()
                decode_s.append(time.perf_counter() - t0)
                past = res.past_key_values
                tok = res.logits[:, -1].argmax(-1, keepdim=True)
                tokens.append(int(tok))
        run = {
            "cap": cap,
            "device_map": {k: (v if isinstance(v, (int, str)) else str(v)) for k, v in device_map.items()},
            "load_s": load_s,
            "prefill_s": prefill_s,
            "decode_s": decode_s,
            "decode_token_s": statistics.median(decode_s) if decode_s else None,
            "tokens": tokens,
        }
        out["runs"].append(run)
        print(json.dumps({k: run[k] for k in ("cap", "prefill_s", "decode_token_s")}), flush=True)
        if args.maps_dir:
            os.makedirs(args.maps_dir, exist_ok=True)
            with open(os.path.join(args.maps_dir, f"map_{cap}.json"), "w") as f:
                json.dump(run["device_map"], f)
        del model, res, past
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
