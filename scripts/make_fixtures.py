#!/usr/bin/python3
"""Regenerates the executor's reference fixtures under tests/data/<family>_<dtype>/.

For each family (llama with llama3 rope scaling, mistral, qwen2, gemma) and dtype (float32,
bfloat16) it writes a tiny model with seeded random weights as Hugging Face files
(config.json + model.safetensors, transformers' tensor names) and reference.json: the prompt ids,
the float32 logits of the last prompt position after prefill, the logits of every greedy decode
step, and the greedy tokens. The reference is an independent plain-PyTorch implementation of
transformers' eager forward for these families (the llama path matches
../shared/bench/torch_llama_cpu.py; `--check-shared` compares them).

Usage: /usr/bin/python3 scripts/make_fixtures.py [--out tests/data] [--check-shared]
Needs Debian's python3-torch (apt-get install python3-torch).
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

SHAPE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128, max_position_embeddings=256, rms_norm_eps=1e-5)
# bfloat16 fixtures are twice as wide: bf16 rounding noise of the reference itself (relative to
# the logits) shrinks with the width; at hidden 64 it alone reaches ~2 %, the tolerance.
SHAPE_BF16 = dict(SHAPE, hidden_size=128, intermediate_size=160)
PROMPT_LEN, NEW_TOKENS = 12, 6


def config_for(family, dtype):
    c = dict(SHAPE_BF16 if dtype == "bfloat16" else SHAPE)
    c["model_type"] = family
    c["torch_dtype"] = dtype
    c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    c["tie_word_embeddings"] = False
    c["rope_theta"] = 10000.0
    c["rope_scaling"] = None
    c["hidden_act"] = "silu"
    if family == "llama":
        c["architectures"] = ["LlamaForCausalLM"]
        c["rope_theta"] = 500000.0
        c["rope_scaling"] = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64, "rope_type": "llama3"}
    elif family == "mistral":
        c["architectures"] = ["MistralForCausalLM"]
        c["sliding_window"] = 8  # shorter than the prompt: the window matters
    elif family == "qwen2":
        c["architectures"] = ["Qwen2ForCausalLM"]
        c["tie_word_embeddings"] = True
        c["use_sliding_window"] = False
        c["sliding_window"] = None
    elif family == "gemma":
        c["architectures"] = ["GemmaForCausalLM"]
        c["head_dim"] = c["hidden_size"] // 2  # differs from hidden / heads, as gemma's does
        c["tie_word_embeddings"] = True
        c["hidden_act"] = "gelu_pytorch_tanh"
    return c


def weight_specs(c):
    H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    bias = c["model_type"] == "qwen2"
    specs = [("model.embed_tokens.weight", (V, H), "matrix")]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [(p + "input_layernorm.weight", (H,), "norm"),
                  (p + "self_attn.q_proj.weight", (nh * hd, H), "matrix"),
                  (p + "self_attn.k_proj.weight", (nkv * hd, H), "matrix"),
                  (p + "self_attn.v_proj.weight", (nkv * hd, H), "matrix")]
        if bias:
            specs += [(p + "self_attn.q_proj.bias", (nh * hd,), "bias"),
                      (p + "self_attn.k_proj.bias", (nkv * hd,), "bias"),
                      (p + "self_attn.v_proj.bias", (nkv * hd,), "bias")]
        specs += [(p + "self_attn.o_proj.weight", (H, nh * hd), "matrix"),
                  (p + "post_attention_layernorm.weight", (H,), "norm"),
                  (p + "mlp.gate_proj.weight", (I, H), "matrix"),
                  (p + "mlp.up_proj.weight", (I, H), "matrix"),
                  (p + "mlp.down_proj.weight", (H, I), "matrix")]
    specs.append(("model.norm.weight", (H,), "norm"))
    if not c["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (V, H), "matrix"))
    return specs


def make_weights(c, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape, kind in weight_specs(c):
        t = torch.empty(shape, dtype=torch.float32)
        if kind == "norm":
            t.normal_(0.0, 0.1, generator=g)
            if c["model_type"] != "gemma":
                t.add_(1.0)  # gemma stores the offset from 1
        elif kind == "bias":
            t.normal_(0.0, 0.1, generator=g)
        else:
            t.normal_(0.0, 1.0 / math.sqrt(shape[-1]), generator=g)
        w[name] = t.to(dtype)
    return w


def inv_freq(c):
    hd = c["head_dim"]
    f = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = c.get("rope_scaling")
    if rs:
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / f
        scaled = torch.where(wavelen > old / lo, f / factor, f)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / hi) & (wavelen <= old / lo)
        f = torch.where(medium, smoothed, scaled)
    return f


class Model:
    """transformers' eager forward for llama / mistral / qwen2 / gemma, batch 1."""

    def __init__(self, c, w, dtype):
        self.c, self.w, self.dtype = c, w, dtype
        self.gemma = c["model_type"] == "gemma"
        hd = c["head_dim"]
        pos = torch.arange(c["max_position_embeddings"], dtype=torch.float32)
        emb = torch.cat([torch.outer(pos, inv_freq(c))] * 2, dim=-1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)
        self.k = [None] * c["num_hidden_layers"]
        self.v = [None] * c["num_hidden_layers"]
        self.head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
        self.window = c.get("sliding_window") if c["model_type"] == "mistral" else None

    def norm(self, x, g):
        eps = self.c["rms_norm_eps"]
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        if self.gemma:  # Gemma: multiply in float32 by (1 + w), then cast
            return (xf * (1.0 + g.float())).type_as(x)
        return g * xf.to(x.dtype)

    @staticmethod
    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def forward(self, ids, start):
        c, w = self.c, self.w
        T = ids.shape[0]
        end = start + T
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        x = F.embedding(ids, w["model.embed_tokens.weight"]).unsqueeze(0)
        if self.gemma:
            x = x * torch.tensor(c["hidden_size"] ** 0.5, dtype=x.dtype)
        cos, sin = self.cos[start:end][None, None], self.sin[start:end][None, None]
        qp = torch.arange(start, end).unsqueeze(1)
        kp = torch.arange(0, end).unsqueeze(0)
        masked = kp > qp
        if self.window:
            masked = masked | (kp <= qp - self.window)
        mask = torch.zeros(T, end).masked_fill_(masked, float("-inf"))
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.norm(x, w[p + "input_layernorm.weight"])

            def proj(n, heads):
                y = F.linear(h, w[p + f"self_attn.{n}_proj.weight"], w.get(p + f"self_attn.{n}_proj.bias"))
                return y.view(1, T, heads, hd).transpose(1, 2)
            q, k, v = proj("q", nh), proj("k", nkv), proj("v", nkv)
            q = q * cos + self.rot(q) * sin
            k = k * cos + self.rot(k) * sin
            self.k[i] = k if start == 0 else torch.cat([self.k[i], k], dim=2)
            self.v[i] = v if start == 0 else torch.cat([self.v[i], v], dim=2)
            rep = nh // nkv
            K = self.k[i].repeat_interleave(rep, dim=1)
            V = self.v[i].repeat_interleave(rep, dim=1)
            s = (torch.matmul(q, K.transpose(2, 3)) / math.sqrt(hd)).float() + mask
            a = torch.matmul(torch.softmax(s, dim=-1).to(self.dtype), V).transpose(1, 2).reshape(1, T, nh * hd)
            x = x + F.linear(a, w[p + "self_attn.o_proj.weight"])
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            gate = F.linear(h, w[p + "mlp.gate_proj.weight"])
            act = F.gelu(gate, approximate="tanh") if self.gemma else F.silu(gate)
            x = x + F.linear(act * F.linear(h, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])
        x = self.norm(x, w["model.norm.weight"])
        return F.linear(x[:, -1:], self.head).float()[0, -1]


def save_safetensors(path, tensors):
    header, off, order = {}, 0, list(tensors)
    names = {torch.float32: "F32", torch.bfloat16: "BF16"}
    for n in order:
        t = tensors[n]
        nb = t.numel() * t.element_size()
        header[n] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + nb]}
        off += nb
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for n in order:
            t = tensors[n].contiguous()
            (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tofile(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for fi, family in enumerate(["llama", "mistral", "qwen2", "gemma"]):
        for dname, dtype in [("float32", torch.float32), ("bfloat16", torch.bfloat16)]:
            c = config_for(family, dname)
            w = make_weights(c, dtype, seed=100 + fi)
            out = os.path.join(args.out, f"{family}_{dname}")
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "config.json"), "w") as f:
                json.dump(c, f, indent=1)
            save_safetensors(os.path.join(out, "model.safetensors"), w)
            g = torch.Generator().manual_seed(7 + fi)
            prompt = torch.randint(0, c["vocab_size"], (PROMPT_LEN,), generator=g)
            m = Model(c, w, dtype)
            with torch.inference_mode():
                logits = m.forward(prompt, 0)
                ref = {"prompt_ids": prompt.tolist(), "prefill_logits": logits.tolist(), "decode_logits": [],
                       "greedy_tokens": []}
                cur = int(torch.argmax(logits))
                for step in range(NEW_TOKENS - 1):
                    ref["greedy_tokens"].append(cur)
                    logits = m.forward(torch.tensor([cur]), PROMPT_LEN + step)
                    ref["decode_logits"].append(logits.tolist())
                    cur = int(torch.argmax(logits))
                ref["greedy_tokens"].append(cur)
            ref["what"] = ("scripts/make_fixtures.py: float32 logits of the last prompt position (prefill_logits) "
                           "and of each greedy decode step (decode_logits[j] after feeding greedy_tokens[j] at "
                           "position prompt_len + j), computed in " + dname)
            ref["torch"] = torch.__version__
            with open(os.path.join(out, "reference.json"), "w") as f:
                json.dump(ref, f)
            print(out, ref["greedy_tokens"])


if __name__ == "__main__":
    sys.exit(main())
