#!/usr/bin/env python3
"""Hostile-input property test of the dmap CLI (issue 20).

Mutates the files dmap reads and runs the CLI on each mutant:
- a shipped scenario (its model inlined, so that config values are mutated too), run by
  `dmap simulate`, `dmap report` and `dmap map`;
- a hardware preset the scenario names (in a copy of configs/ the binary is pointed at with
  DMAP_MODELS_DIR), run by `dmap simulate`;
- the shipped calibration, given to `dmap simulate --calibration`;
- a test checkpoint's config.json, run by `dmap map --model` and `dmap memory`;
- a hand-written device map, given to `dmap map --device-map`.
Every run must exit 0 or 2
(never crash, never an internal error), finish within its timeout (never hang), print a message
on standard error when it fails, print valid JSON when it succeeds with --format json, and never
write outside its own sandbox folder.

Mutations (seeded, text-level: no YAML library is needed): a value replaced by a huge, negative,
zero, fractional, empty, path-like, very long, non-UTF-8 or structured value; a key misspelled,
duplicated or removed; the file truncated; a NUL or control byte inserted.

Usage: mutate_test.py DMAP_BINARY SOURCE_DIR [MUTANTS] [SEED]
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

DMAP, SRC = sys.argv[1], sys.argv[2]
MUTANTS = int(sys.argv[3]) if len(sys.argv) > 3 else 1200
SEED = int(sys.argv[4]) if len(sys.argv) > 4 else 20261203
TIMEOUT_S = 30

VALUES = [
    b"9223372036854775807", b"9223372036854775808", b"99999999999999999999", b"-1", b"0", b"1e300", b"-1e300",
    b"0.5", b"nan", b".inf", b"''", b'""', b"../../escape", b"..", b".", b"/etc/passwd", b"x" * 5000, b"\xff\xfe\xe9",
    b"[a, b]", b"{a: 1}", b"null", b"~", b"true", b"1152921504606846976", b"100000TiB", b"4000000000000",
    b"1GiB", b"-5GiB", b"12abc", b"0x10", b"[]", b"{}", b"&a [*a]",
]
# `key: value` in YAML, `"key": value` in JSON.
KEY_RE = re.compile(rb"(?P<key>[A-Za-z_][A-Za-z0-9_]*)\"?(?P<sep>:\s*)(?P<value>[^,{}\[\]\n#]+)")


def inline_model(text):
    """Replaces `model: <preset>` by the preset's YAML, indented, so its config is mutated too."""
    m = re.search(rb"^model:\s*([A-Za-z0-9_]+)\s*$", text, re.M)
    if not m:
        return text
    path = os.path.join(SRC, "configs", "models", m.group(1).decode() + ".yaml")
    if not os.path.exists(path):
        return text
    with open(path, "rb") as f:
        body = b"".join(b"  " + line if line.strip() and not line.startswith(b"#") else b""
                        for line in f.read().splitlines(True))
    return text[:m.start()] + b"model:\n" + body + text[m.end():]


def mutate(text, rng):
    kind = rng.randrange(8)
    spots = list(KEY_RE.finditer(text))
    if kind <= 2 and spots:  # a value replaced
        m = rng.choice(spots)
        return text[:m.start("value")] + rng.choice(VALUES) + text[m.end("value"):], "value of " + m.group("key").decode()
    if kind == 3 and spots:  # a key misspelled
        m = rng.choice(spots)
        k = bytearray(m.group("key"))
        i = rng.randrange(len(k))
        k[i:i + 1] = bytes([rng.choice(b"abcdefghijklmnopqrstuvwxyz_")])
        return text[:m.start("key")] + bytes(k) + text[m.end("key"):], "key " + m.group("key").decode() + " misspelled"
    if kind == 4 and spots:  # a key duplicated or removed
        m = rng.choice(spots)
        if rng.random() < 0.5:
            return text[:m.end()] + b", " + m.group(0) + text[m.end():], "key " + m.group("key").decode() + " twice"
        end = m.end()
        if text[end:end + 1] == b",":
            end += 1
        return text[:m.start()] + text[end:], "key " + m.group("key").decode() + " removed"
    if kind == 5:  # truncated
        return text[:rng.randrange(max(1, len(text)))], "truncated"
    if kind == 6:  # a control byte
        i = rng.randrange(max(1, len(text)))
        return text[:i] + rng.choice([b"\x00", b"\x07", b"\t", b"\r", b"\xc3"]) + text[i:], "control byte"
    # several values at once
    out = text
    for _ in range(3):
        spots = list(KEY_RE.finditer(out))
        if not spots:
            break
        m = rng.choice(spots)
        out = out[:m.start("value")] + rng.choice(VALUES) + out[m.end("value"):]
    return out, "three values"


def files_under(folder):
    out = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(root, name), folder))
    return out


def run_one(job):
    index, what, command, files, argv, use_configs = job
    sandbox = tempfile.mkdtemp(prefix="dmap_mutant_")
    try:
        os.makedirs(os.path.join(sandbox, "in"))
        env = dict(os.environ)
        if use_configs:  # a private copy of configs/ holding the mutated preset
            shutil.copytree(os.path.join(SRC, "configs", "models"), os.path.join(sandbox, "configs", "models"))
            shutil.copytree(os.path.join(SRC, "configs", "hardware"), os.path.join(sandbox, "configs", "hardware"))
            env["DMAP_MODELS_DIR"] = os.path.join(sandbox, "configs", "models")
        for rel, data in files.items():
            path = os.path.join(sandbox, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        argv = [DMAP] + [a.replace("{sandbox}", sandbox) for a in argv]
        out_dir = os.path.join(sandbox, "out")
        try:
            p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, cwd=os.path.join(sandbox, "in"), env=env)
        except subprocess.TimeoutExpired:
            return index, what, command, f"no answer within {TIMEOUT_S} s (hang?)", files, None
        problems = []
        if p.returncode not in (0, 2):
            problems.append(f"exit {p.returncode}: {p.stderr[-400:]!r}")
        if p.returncode == 2 and not p.stderr.strip():
            problems.append("exit 2 without a message")
        if p.returncode == 2 and p.stdout.strip():
            problems.append("exit 2 with output on stdout")
        if p.returncode == 0 and "--format" in argv and argv[argv.index("--format") + 1] == "json":
            try:
                json.loads(p.stdout.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                problems.append(f"exit 0 but stdout is not JSON: {e}")
        allowed = ("in", "out", "configs")
        stray = {f for f in files_under(sandbox) if f.split(os.sep)[0] not in allowed}
        if stray:
            problems.append(f"wrote outside its output folder: {sorted(stray)[:5]}")
        if command == "report" and p.returncode != 0 and os.path.exists(out_dir) and files_under(out_dir):
            problems.append(f"failed but left files: {sorted(files_under(out_dir))[:5]}")
        return index, what, command, "; ".join(problems), files, p.returncode
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def read(*parts):
    with open(os.path.join(SRC, *parts), "rb") as f:
        return f.read()


def mutated(text, rng):
    text, what = mutate(text, rng)
    if rng.random() < 0.3:  # a second mutation on top
        text, more = mutate(text, rng)
        what += " + " + more
    return text, what


def referenced_presets(scenario):
    """The hardware preset files a scenario's `hardware:` names, following system presets."""
    names = set(re.findall(rb"[A-Za-z0-9_]+", scenario.split(b"hardware:", 1)[1].split(b"\nworkload", 1)[0]))
    out = []
    for n in sorted(names):
        path = os.path.join(SRC, "configs", "hardware", n.decode() + ".yaml")
        if os.path.exists(path):
            out.append(n.decode())
            with open(path, "rb") as f:
                body = f.read()
            if b"kind: system" in body:
                out += [m.decode() for m in sorted(set(re.findall(rb"[A-Za-z0-9_]+", body)))
                        if os.path.exists(os.path.join(SRC, "configs", "hardware", m.decode() + ".yaml"))]
    return sorted(set(out))


# A hand-written map for the seed scenario's Llama-3.1-8B, split over GPU, CPU and disk.
SEED_SCENARIO = "seed_llama31_8b_fp32_11_5gb.yaml"
SEED_MAP = (b"model.embed_tokens: 0\nmodel.layers.0: 0\nmodel.layers.1: 0\nmodel.layers.2: cpu\n"
            b"model.layers: cpu\nmodel.norm: cpu\nmodel.rotary_emb: cpu\nlm_head: disk\n")


def main():
    rng = random.Random(SEED)
    scenarios = []  # (name, original, model inlined)
    folder = os.path.join(SRC, "configs", "scenarios")
    for name in sorted(os.listdir(folder)):
        text = read("configs", "scenarios", name)
        if b"hardware:" in text:
            scenarios.append((name, text, inline_model(text)))
    calibration = read("configs", "calibrations", "cloud_xeon_2vcpu.yaml")
    data = os.path.join(SRC, "tests", "data")
    configs = [read("tests", "data", d, "config.json") for d in sorted(os.listdir(data))
               if os.path.exists(os.path.join(data, d, "config.json"))]
    jobs = []
    for i in range(MUTANTS):
        name, original, inlined = rng.choice(scenarios)
        kind = rng.choices(["scenario", "hardware", "calibration", "config", "map"], weights=[10, 4, 2, 2, 2])[0]
        if kind == "scenario":
            text, what = mutated(inlined, rng)
            command = rng.choices(["simulate", "report", "map"], weights=[6, 2, 2])[0]
            argv = {"simulate": ["simulate", "{sandbox}/in/mutant.yaml", "--format", "json"],
                    "report": ["report", "{sandbox}/in/mutant.yaml", "--out", "{sandbox}/out"],
                    "map": ["map", "{sandbox}/in/mutant.yaml", "--format", "json"]}[command]
            jobs.append((i, what, command, {"in/mutant.yaml": text}, argv, False))
        elif kind == "hardware":
            preset = rng.choice(referenced_presets(original))
            text, what = mutated(read("configs", "hardware", preset + ".yaml"), rng)
            jobs.append((i, f"hardware preset {preset}: {what}", "simulate",
                         {"in/scenario.yaml": original, f"configs/hardware/{preset}.yaml": text},
                         ["simulate", "{sandbox}/in/scenario.yaml", "--format", "json"], True))
        elif kind == "calibration":
            text, what = mutated(calibration, rng)
            jobs.append((i, "calibration: " + what, "simulate", {"in/scenario.yaml": original, "in/cal.yaml": text},
                         ["simulate", "{sandbox}/in/scenario.yaml", "--calibration", "{sandbox}/in/cal.yaml",
                          "--format", "json"], False))
        elif kind == "config":
            text, what = mutated(rng.choice(configs), rng)
            command = rng.choice(["map", "memory"])
            argv = (["map", "--model", "{sandbox}/in/ckpt/config.json", "--max-memory", "0=100KiB,cpu=1GiB", "--format", "json"]
                    if command == "map" else ["memory", "{sandbox}/in/ckpt/config.json", "--format", "json"])
            jobs.append((i, "config.json: " + what, command, {"in/ckpt/config.json": text}, argv, False))
        else:
            text, what = mutated(SEED_MAP, rng)
            jobs.append((i, "device-map: " + what, "map", {"in/map.yaml": text},
                         ["map", os.path.join(folder, SEED_SCENARIO), "--device-map", "{sandbox}/in/map.yaml", "--format", "json"],
                         False))
    failures, kinds = [], {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for index, what, command, problem, files, rc in pool.map(run_one, jobs):
            kind = what.split(" ")[0].rstrip(":") if ": " in what else "scenario"
            n, ok = kinds.get(kind, (0, 0))
            kinds[kind] = (n + 1, ok + (rc == 0))
            if problem:
                failures.append((index, what, command, problem, files))
    for index, what, command, problem, files in failures[:10]:
        print(f"FAIL mutant {index} ({what}), dmap {command}: {problem}")
        for rel, text in files.items():
            print(f"--- {rel} (first 1500 bytes) ---")
            print(text[:1500].decode("utf-8", "replace"))
    counts = ", ".join(f"{n} {k} ({ok} exit 0)" for k, (n, ok) in sorted(kinds.items()))
    print(f"mutate: {MUTANTS} mutants ({counts}; seed {SEED}), {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
