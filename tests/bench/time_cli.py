#!/usr/bin/env python3
"""Times whole `dmap simulate` processes (start-up, config parsing, every strategy, the optimum,
the verdict) for mixture-of-experts models on servers, over repeated runs: median and range.

Usage: python3 tests/bench/time_cli.py [--runs N] [--dmap build/dmap]
Run it on a quiet machine (../shared/bench/wait_quiet.py first). Writes scratch scenarios to a
temporary folder and removes them.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

CASES = {
    "deepseek_v3 on 8 x H100 + 768 GiB": (
        "deepseek_v3",
        "{host: server_ddr5_12ch, gpus: [h100_sxm, h100_sxm, h100_sxm, h100_sxm, h100_sxm, h100_sxm, h100_sxm, h100_sxm], "
        "link: pcie5_x16, disk: nvme_gen4}"),
    "qwen3_235b_a22b on 4 x A100-80GB + 768 GiB": (
        "qwen3_235b_a22b",
        "{host: server_ddr5_12ch, gpus: [a100_80gb, a100_80gb, a100_80gb, a100_80gb], link: pcie4_x16, disk: nvme_gen4}"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--dmap", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "dmap"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for name, (model, hardware) in CASES.items():
            path = os.path.join(d, model + ".yaml")
            with open(path, "w") as f:
                f.write(f"id: time_{model}\nmodel: {model}\nhardware: {hardware}\n"
                        "workload: {batch: 1, prompt: 512, new_tokens: 128, dtype: bfloat16}\n"
                        "strategies: [auto, balanced, sequential, cpu, disk, optimal]\n")
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                subprocess.run([a.dmap, "simulate", path], check=True, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
            print(f"{name}: median {1e3 * statistics.median(times):.1f} ms, "
                  f"min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f} ({a.runs} runs)")


if __name__ == "__main__":
    main()
