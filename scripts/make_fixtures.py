#!/usr/bin/python3
"""Regenerates the executor's reference fixtures under tests/data/<family>_<dtype>/.

For each family (llama with llama3 rope scaling, mistral, qwen2, gemma; qwen3, olmo2, phi3 with
partial rotary and longrope, gemma2, gemma3_text; the mixture-of-experts qwen3_moe, with a dense
layer by mlp_only_layers, and mixtral) and dtype (float32, bfloat16) it writes a tiny model with seeded random weights as Hugging Face files
(config.json + model.safetensors, transformers' tensor names) and reference.json: the prompt ids,
the float32 logits of the last prompt position after prefill, the logits of every greedy decode
step, and the greedy tokens. The reference is an independent plain-PyTorch implementation of
transformers' eager forward for these families, written from transformers v5's modeling code (the
llama path matches ../shared/bench/torch_llama_cpu.py). Each forward keeps the KV cache: longrope
switches to its long factors once the context passes original_max_position_embeddings, for the
new positions only (transformers' generate() would drop the cache there; one forward does not).

Usage: /usr/bin/python3 scripts/make_fixtures.py [--out tests/data] [--families qwen3,olmo2,...]
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
    elif family == "qwen3":
        # transformers v5's config keys: `dtype` and `rope_parameters`
        c["architectures"] = ["Qwen3ForCausalLM"]
        c["head_dim"] = c["hidden_size"] // 2  # q/k/v wider than hidden: o_proj maps back
        c["dtype"] = c.pop("torch_dtype")
        del c["rope_theta"], c["rope_scaling"]
        c["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
        c["attention_bias"] = False
        c["use_sliding_window"] = False
        c["sliding_window"] = None
        c["max_window_layers"] = c["num_hidden_layers"]
        c["rms_norm_eps"] = 1e-6
    elif family == "qwen3_moe":
        # qwen3's attention; layer 0 sparse (8 experts, 2 per token, renormalised as the published
        # checkpoints set norm_topk_prob), layer 1 dense by mlp_only_layers.
        c["architectures"] = ["Qwen3MoeForCausalLM"]
        c["dtype"] = c.pop("torch_dtype")
        del c["rope_theta"], c["rope_scaling"]
        c["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
        c["attention_bias"] = False
        c["use_sliding_window"] = False
        c["sliding_window"] = None
        c["rms_norm_eps"] = 1e-6
        c["num_experts"] = 8
        c["num_experts_per_tok"] = 2
        c["moe_intermediate_size"] = c["intermediate_size"] // 2
        c["norm_topk_prob"] = True
        c["decoder_sparse_step"] = 1
        c["mlp_only_layers"] = [1]
    elif family == "mixtral":
        # Mistral's attention without a window; every layer sparse: 4 experts of intermediate_size,
        # 2 per token; float32 routing weights.
        c["architectures"] = ["MixtralForCausalLM"]
        c["sliding_window"] = None
        c["num_local_experts"] = 4
        c["num_experts_per_tok"] = 2
        c["router_jitter_noise"] = 0.0
    elif family == "olmo2":
        c["architectures"] = ["Olmo2ForCausalLM"]
        c["rms_norm_eps"] = 1e-6
        c["attention_bias"] = False
        del c["head_dim"]  # olmo2 has none: hidden / heads
    elif family == "phi3":
        c["architectures"] = ["Phi3ForCausalLM"]
        del c["head_dim"]
        hd = c["hidden_size"] // c["num_attention_heads"]
        c["partial_rotary_factor"] = 0.75  # as Phi-4-mini: the last quarter of each head is not rotated
        half = int(hd * 0.75) // 2
        g = torch.Generator().manual_seed(11)
        c["original_max_position_embeddings"] = PROMPT_LEN + 2  # the last decode steps use the long factors
        c["rope_scaling"] = {"type": "longrope",
                             "short_factor": [round(1 + 0.5 * float(x), 4) for x in torch.rand(half, generator=g)],
                             "long_factor": [round(1 + 8 * float(x), 4) for x in torch.rand(half, generator=g)]}
        c["sliding_window"] = None
    elif family in ("gemma2", "gemma3_text"):
        c["architectures"] = ["Gemma2ForCausalLM" if family == "gemma2" else "Gemma3ForCausalLM"]
        c["head_dim"] = c["hidden_size"] // 2
        c["tie_word_embeddings"] = True
        c["hidden_activation"] = "gelu_pytorch_tanh"
        del c["hidden_act"]
        c["rms_norm_eps"] = 1e-6
        c["query_pre_attn_scalar"] = 24  # not head_dim: the scale is checked
        c["sliding_window"] = 8  # shorter than the prompt; layer 0 slides, layer 1 does not
        if family == "gemma2":
            c["attn_logit_softcapping"] = 3.0  # small caps so that tanh bends the values
            c["final_logit_softcapping"] = 5.0
        else:
            c["sliding_window_pattern"] = 2
            c["rope_theta"] = 1000000.0
            c["rope_local_base_freq"] = 10000.0
            c["rope_scaling"] = {"rope_type": "linear", "factor": 8.0}
            c["attn_logit_softcapping"] = None
            c["final_logit_softcapping"] = None
    return c


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def num_experts(c):
    return c.get("num_experts") or c.get("num_local_experts") or 0


def expert_width(c):
    return c["moe_intermediate_size"] if c["model_type"] == "qwen3_moe" else c["intermediate_size"]


def sparse(c, i):
    """Qwen3MoeDecoderLayer's rule (mixtral: every layer)."""
    if c["model_type"] == "mixtral":
        return True
    if c["model_type"] != "qwen3_moe":
        return False
    return i not in c["mlp_only_layers"] and num_experts(c) > 0 and (i + 1) % c["decoder_sparse_step"] == 0


def weight_specs(c):
    H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], head_dim(c)
    f = c["model_type"]
    bias = f == "qwen2"
    specs = [("model.embed_tokens.weight", (V, H), "matrix")]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if f != "olmo2":
            specs.append((p + "input_layernorm.weight", (H,), "norm"))
        if f == "phi3":
            specs.append((p + "self_attn.qkv_proj.weight", ((nh + 2 * nkv) * hd, H), "matrix"))
        else:
            specs += [(p + "self_attn.q_proj.weight", (nh * hd, H), "matrix"),
                      (p + "self_attn.k_proj.weight", (nkv * hd, H), "matrix"),
                      (p + "self_attn.v_proj.weight", (nkv * hd, H), "matrix")]
        if bias:
            specs += [(p + "self_attn.q_proj.bias", (nh * hd,), "bias"),
                      (p + "self_attn.k_proj.bias", (nkv * hd,), "bias"),
                      (p + "self_attn.v_proj.bias", (nkv * hd,), "bias")]
        specs.append((p + "self_attn.o_proj.weight", (H, nh * hd), "matrix"))
        if f in ("qwen3", "qwen3_moe", "gemma3_text"):
            specs += [(p + "self_attn.q_norm.weight", (hd,), "norm"), (p + "self_attn.k_norm.weight", (hd,), "norm")]
        if f == "olmo2":
            specs += [(p + "self_attn.q_norm.weight", (nh * hd,), "norm"),
                      (p + "self_attn.k_norm.weight", (nkv * hd,), "norm")]
        specs.append((p + "post_attention_layernorm.weight", (H,), "norm"))
        if f in ("gemma2", "gemma3_text"):
            specs.append((p + "pre_feedforward_layernorm.weight", (H,), "norm"))
        if sparse(c, i):  # transformers v5: the router and the experts' two 3-D tensors
            E, EI = num_experts(c), expert_width(c)
            specs += [(p + "mlp.gate.weight", (E, H), "matrix"),
                      (p + "mlp.experts.gate_up_proj", (E, 2 * EI, H), "matrix"),
                      (p + "mlp.experts.down_proj", (E, H, EI), "matrix")]
        elif f == "phi3":
            specs.append((p + "mlp.gate_up_proj.weight", (2 * I, H), "matrix"))
        else:
            specs += [(p + "mlp.gate_proj.weight", (I, H), "matrix"),
                      (p + "mlp.up_proj.weight", (I, H), "matrix")]
        if not sparse(c, i):
            specs.append((p + "mlp.down_proj.weight", (H, I), "matrix"))
        if f in ("olmo2", "gemma2", "gemma3_text"):
            specs.append((p + "post_feedforward_layernorm.weight", (H,), "norm"))
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
            if not c["model_type"].startswith("gemma"):
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


def default_inv_freq(theta, dim):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


OLD_FAMILIES = ("llama", "mistral", "qwen2", "gemma")


class Model:
    """transformers' eager forward (v5 modeling code) for every family above, batch 1."""

    def __init__(self, c, w, dtype):
        self.c, self.w, self.dtype = c, w, dtype
        f = self.f = c["model_type"]
        self.gemma = f.startswith("gemma")
        self.hd = head_dim(c)
        n = c["num_hidden_layers"]
        if f == "mistral":
            sliding = [True] * n
        elif f == "gemma2":
            sliding = [bool((i + 1) % 2) for i in range(n)]
        elif f == "gemma3_text":
            sliding = [bool((i + 1) % c.get("sliding_window_pattern", 6)) for i in range(n)]
        else:
            sliding = [False] * n
        self.window = [c["sliding_window"] if s else None for s in sliding]
        self.sliding = sliding
        # RoPE: the rotated channels, the frequencies (per layer type for gemma3) and a factor on cos/sin.
        self.rot_dim = int(self.hd * c.get("partial_rotary_factor", 1.0)) if f == "phi3" else self.hd
        self.attn_factor = 1.0
        if f in OLD_FAMILIES:
            self.freq = {"full": inv_freq(c)}
        elif f in ("qwen3", "qwen3_moe"):
            self.freq = {"full": default_inv_freq(c["rope_parameters"]["rope_theta"], self.hd)}
        elif f == "phi3":
            rs, orig = c["rope_scaling"], c["original_max_position_embeddings"]
            # longrope: 1 / (factor * base^(i / dim)), short factors up to original_max_position_embeddings
            shape = torch.arange(0, self.rot_dim, 2, dtype=torch.int64).float() / self.rot_dim
            self.freq = {key: 1.0 / (torch.tensor(rs[key + "_factor"], dtype=torch.float32) * c["rope_theta"] ** shape)
                         for key in ("short", "long")}
            factor = c["max_position_embeddings"] / orig
            self.attn_factor = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0
            self.orig = orig
        elif f == "gemma3_text":
            self.freq = {"full": default_inv_freq(c["rope_theta"], self.hd) / c["rope_scaling"]["factor"],
                         "local": default_inv_freq(c["rope_local_base_freq"], self.hd)}
        else:
            self.freq = {"full": default_inv_freq(c["rope_theta"], self.hd)}
        self.k = [None] * n
        self.v = [None] * n
        self.head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]

    def norm(self, x, g, kind=None):
        eps = self.c["rms_norm_eps"]
        kind = kind or ("gemma" if self.gemma else "olmo2" if self.f == "olmo2" else "llama")
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        if kind == "gemma":  # Gemma: multiply in float32 by (1 + w), then cast
            return (xf * (1.0 + g.float())).type_as(x)
        if kind == "olmo2":  # OLMo 2: multiply in float32 by w, then cast
            return (g * xf).to(x.dtype)
        return g * xf.to(x.dtype)

    @staticmethod
    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def cos_sin(self, key, start, end):
        pos = torch.arange(start, end, dtype=torch.float32)
        emb = torch.cat([torch.outer(pos, self.freq[key])] * 2, dim=-1)
        cos, sin = emb.cos() * self.attn_factor, emb.sin() * self.attn_factor
        if self.f == "olmo2":  # OLMo 2's rotary embedding returns float32 cos/sin
            return cos[None, None], sin[None, None]
        return cos.to(self.dtype)[None, None], sin.to(self.dtype)[None, None]

    def rope(self, x, cos, sin):
        r = self.rot_dim
        xr, xp = x[..., :r], x[..., r:]
        y = xr * cos + self.rot(xr) * sin
        return torch.cat([y.to(x.dtype), xp], dim=-1)

    def moe(self, h, p):
        """The sparse block: TopKRouter, then the experts as v5's default grouped_mm computes them
        (per expert products, each row times its routing weight, the k rows summed, cast once)."""
        c, w = self.c, self.w
        hs = h.reshape(-1, h.shape[-1])
        logits = F.linear(hs, w[p + "mlp.gate.weight"])
        probs = torch.softmax(logits.float(), dim=-1)
        top_v, top_i = torch.topk(probs, c["num_experts_per_tok"], dim=-1)
        if self.f == "mixtral" or c.get("norm_topk_prob"):
            top_v = top_v / top_v.sum(dim=-1, keepdim=True)
        if self.f == "qwen3_moe":  # cast back to the logits' dtype; mixtral keeps float32
            top_v = top_v.to(logits.dtype)
        gu, down = w[p + "mlp.experts.gate_up_proj"], w[p + "mlp.experts.down_proj"]
        T, K = hs.shape[0], top_i.shape[1]
        rows = []
        for t in range(T):
            terms = []
            for r in range(K):
                e = int(top_i[t, r])
                gate, up = F.linear(hs[t:t + 1], gu[e]).chunk(2, dim=-1)
                d = F.linear(F.silu(gate) * up, down[e])
                terms.append(d * top_v[t, r])
            rows.append(torch.stack(terms, dim=1))  # (1, K, H)
        out = torch.cat(rows, dim=0).sum(dim=1).to(hs.dtype)
        return out.reshape(h.shape)

    def forward(self, ids, start):
        c, w, f = self.c, self.w, self.f
        T = ids.shape[0]
        end = start + T
        nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], self.hd
        x = F.embedding(ids, w["model.embed_tokens.weight"]).unsqueeze(0)
        if self.gemma:
            x = x * torch.tensor(c["hidden_size"] ** 0.5, dtype=x.dtype)
        if f == "phi3":
            rope = {"full": self.cos_sin("long" if end > self.orig else "short", start, end)}
        else:
            rope = {k: self.cos_sin(k, start, end) for k in self.freq}
        qp = torch.arange(start, end).unsqueeze(1)
        kp = torch.arange(0, end).unsqueeze(0)
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            masked = kp > qp
            if self.window[i]:
                masked = masked | (kp <= qp - self.window[i])
            mask = torch.zeros(T, end).masked_fill_(masked, float("-inf"))
            h = x if f == "olmo2" else self.norm(x, w[p + "input_layernorm.weight"])
            if f == "phi3":
                qkv = F.linear(h, w[p + "self_attn.qkv_proj.weight"])
                q, k, v = qkv[..., :nh * hd], qkv[..., nh * hd:(nh + nkv) * hd], qkv[..., (nh + nkv) * hd:]
            else:
                q, k, v = (F.linear(h, w[p + f"self_attn.{n}_proj.weight"], w.get(p + f"self_attn.{n}_proj.bias"))
                           for n in ("q", "k", "v"))
            if f == "olmo2":  # over all heads, before the split
                q = self.norm(q, w[p + "self_attn.q_norm.weight"])
                k = self.norm(k, w[p + "self_attn.k_norm.weight"])
            q, k, v = q.view(1, T, nh, hd), k.view(1, T, nkv, hd), v.view(1, T, nkv, hd)
            if f in ("qwen3", "qwen3_moe", "gemma3_text"):  # per head, over head_dim
                q = self.norm(q, w[p + "self_attn.q_norm.weight"])
                k = self.norm(k, w[p + "self_attn.k_norm.weight"])
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            key = ("local" if self.sliding[i] else "full") if f == "gemma3_text" else "full"
            cos, sin = rope[key]
            if f in OLD_FAMILIES:
                q = q * cos + self.rot(q) * sin
                k = k * cos + self.rot(k) * sin
            else:
                q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            self.k[i] = k if start == 0 else torch.cat([self.k[i], k], dim=2)
            self.v[i] = v if start == 0 else torch.cat([self.v[i], v], dim=2)
            rep = nh // nkv
            K = self.k[i].repeat_interleave(rep, dim=1)
            V = self.v[i].repeat_interleave(rep, dim=1)
            if f in OLD_FAMILIES:
                s = torch.matmul(q, K.transpose(2, 3)) / math.sqrt(hd)
            else:
                scaling = c["query_pre_attn_scalar"] ** -0.5 if f in ("gemma2", "gemma3_text") else hd ** -0.5
                s = torch.matmul(q, K.transpose(2, 3)) * scaling
                cap = c.get("attn_logit_softcapping") if f == "gemma2" else None
                if cap:
                    s = torch.tanh(s / cap) * cap
            s = s.float() + mask
            a = torch.matmul(torch.softmax(s, dim=-1).to(self.dtype), V).transpose(1, 2).reshape(1, T, nh * hd)
            o = F.linear(a, w[p + "self_attn.o_proj.weight"])
            if f in ("olmo2", "gemma2", "gemma3_text"):
                o = self.norm(o, w[p + "post_attention_layernorm.weight"])
            x = x + o
            if f == "olmo2":
                h = x
            elif f in ("gemma2", "gemma3_text"):
                h = self.norm(x, w[p + "pre_feedforward_layernorm.weight"])
            else:
                h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            if sparse(c, i):
                m = self.moe(h, p)
            elif f == "phi3":
                gate, up = F.linear(h, w[p + "mlp.gate_up_proj.weight"]).chunk(2, dim=-1)
                m = F.linear(up * F.silu(gate), w[p + "mlp.down_proj.weight"])
            else:
                gate = F.linear(h, w[p + "mlp.gate_proj.weight"])
                act = F.gelu(gate, approximate="tanh") if self.gemma else F.silu(gate)
                m = F.linear(act * F.linear(h, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"])
            if f in ("olmo2", "gemma2", "gemma3_text"):
                m = self.norm(m, w[p + "post_feedforward_layernorm.weight"])
            x = x + m
        x = self.norm(x, w["model.norm.weight"])
        logits = F.linear(x[:, -1:], self.head)
        cap = c.get("final_logit_softcapping") if f == "gemma2" else None
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits.float()[0, -1]


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
    ap.add_argument("--families", default="", help="comma-separated; default: all")
    args = ap.parse_args()
    torch.set_num_threads(1)
    families = ["llama", "mistral", "qwen2", "gemma", "qwen3", "olmo2", "phi3", "gemma2", "gemma3_text", "qwen3_moe",
                "mixtral"]
    for fi, family in enumerate(families):  # (the seeds follow this order: append new families)
        if args.families and family not in args.families.split(","):
            continue
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
