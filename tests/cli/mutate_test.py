#!/usr/bin/env python3
"""Hostile-input property test of the dmap CLI (issue 20).

Mutates the shipped scenarios (with their model inlined, so that config values are mutated too)
and runs `dmap simulate`, `dmap report` and `dmap map` on each mutant. Every run must exit 0 or 2
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
KEY_RE = re.compile(rb"(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>:\s*)(?P<value>[^,{}\[\]\n#]+)")


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


def run_one(args):
    index, text, what, command = args
    sandbox = tempfile.mkdtemp(prefix="dmap_mutant_")
    try:
        os.makedirs(os.path.join(sandbox, "in"))
        scenario = os.path.join(sandbox, "in", "mutant.yaml")
        with open(scenario, "wb") as f:
            f.write(text)
        out_dir = os.path.join(sandbox, "out")
        argv = {"simulate": [DMAP, "simulate", scenario, "--format", "json"],
                "report": [DMAP, "report", scenario, "--out", out_dir],
                "map": [DMAP, "map", scenario, "--format", "json"]}[command]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, cwd=os.path.join(sandbox, "in"))
        except subprocess.TimeoutExpired:
            return index, what, command, f"no answer within {TIMEOUT_S} s (hang?)", text
        problems = []
        if p.returncode not in (0, 2):
            problems.append(f"exit {p.returncode}: {p.stderr[-400:]!r}")
        if p.returncode == 2 and not p.stderr.strip():
            problems.append("exit 2 without a message")
        if p.returncode == 2 and p.stdout.strip():
            problems.append("exit 2 with output on stdout")
        if p.returncode == 0 and command in ("simulate", "map"):
            try:
                json.loads(p.stdout.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                problems.append(f"exit 0 but stdout is not JSON: {e}")
        stray = {f for f in files_under(sandbox) if not (f == "in" or f.startswith("in" + os.sep) or f == "out"
                                                         or f.startswith("out" + os.sep))}
        if stray:
            problems.append(f"wrote outside its output folder: {sorted(stray)[:5]}")
        if command == "report" and p.returncode != 0 and os.path.exists(out_dir) and files_under(out_dir):
            problems.append(f"failed but left files: {sorted(files_under(out_dir))[:5]}")
        return index, what, command, "; ".join(problems), text
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


def main():
    rng = random.Random(SEED)
    seeds = []
    folder = os.path.join(SRC, "configs", "scenarios")
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            text = f.read()
        if b"hardware:" in text:
            seeds.append(inline_model(text))
    jobs = []
    for i in range(MUTANTS):
        text, what = mutate(rng.choice(seeds), rng)
        if rng.random() < 0.3:  # a second mutation on top
            text, more = mutate(text, rng)
            what += " + " + more
        command = rng.choices(["simulate", "report", "map"], weights=[6, 2, 2])[0]
        jobs.append((i, text, what, command))
    failures, exits = [], {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for index, what, command, problem, text in pool.map(run_one, jobs):
            if problem:
                failures.append((index, what, command, problem, text))
    for index, what, command, problem, text in failures[:10]:
        print(f"FAIL mutant {index} ({what}), dmap {command}: {problem}")
        print("--- mutant (first 1500 bytes) ---")
        print(text[:1500].decode("utf-8", "replace"))
    print(f"mutate: {MUTANTS} mutants of {len(seeds)} scenarios (seed {SEED}), {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
