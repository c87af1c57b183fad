"""The attention of a vision transformer: where the class token looks, per head or averaged over heads, in one block
or rolled out through all of them (Abnar & Zuidema 2020). The same for every class: it explains no score."""
from __future__ import annotations

import torch
from torch import nn

from ..base import Method, Option, register


def attention_module(block: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name inside the block, module)`` of a block's self-attention: torchvision's ``nn.MultiheadAttention`` or timm's
    ``Attention`` (a ``qkv`` Linear and ``num_heads``); None when there is none."""
    for n, m in block.named_modules():
        if isinstance(m, nn.MultiheadAttention) or (isinstance(getattr(m, "qkv", None), nn.Linear)
                                                   and isinstance(getattr(m, "num_heads", None), int)):
            return n, m
    return None


def attention_blocks(probe) -> list:
    """The ViT blocks (token layers) of ``probe.layers`` that hold a self-attention over all tokens."""
    return [l for l in probe.layers if l.reshape is not None and l.reshape.kind == "tokens"
            and attention_module(probe.view_module(l.name)) is not None]


def attention_weights(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) of attention module ``m`` for its input ``x`` (N x T x C): ``N x heads x T x T``."""
    n, t, c = x.shape
    if isinstance(m, nn.MultiheadAttention):
        h = m.num_heads
        w, b = m.in_proj_weight, m.in_proj_bias
        if w is None:  # separate q / k / v projections
            q = nn.functional.linear(x, m.q_proj_weight, None if b is None else b[:c])
            k = nn.functional.linear(x, m.k_proj_weight, None if b is None else b[c:2 * c])
        else:
            q = nn.functional.linear(x, w[:c], None if b is None else b[:c])
            k = nn.functional.linear(x, w[c:2 * c], None if b is None else b[c:2 * c])
        d = c // h
        q, k = (z.reshape(n, t, h, d).transpose(1, 2) for z in (q, k))
        scale = d ** -0.5
    else:
        h = m.num_heads
        qkv = m.qkv(x).reshape(n, t, 3, h, -1).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        q = m.q_norm(q) if hasattr(m, "q_norm") else q
        k = m.k_norm(k) if hasattr(m, "k_norm") else k
        scale = getattr(m, "scale", q.shape[-1] ** -0.5)
    return ((q * scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)


def rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout: each block's head-averaged attention with the residual added (0.5 A + 0.5 I, rows
    renormalised), multiplied through the blocks: ``N x T x T``."""
    r = None
    for a in maps:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        r = a if r is None else a @ r
    return r


@register
class Attention(Method):
    name = "attention"
    label = "Attention (ViT)"
    short = "Attention"
    signed = False
    general = False
    order = 45
    options = (Option("attention", "choice", "rollout", "attention",
                      choices=(("rollout", "rollout through all blocks"), ("block", "one block"))),
               Option("head", "int", -1, "head", min=-1, max=63, slider=(-1, 15, 1),
                      help="a head of the block, -1: the average over heads"),
               Option("layer", "layer", None, "block", help="a ViT block; None: the last one"))

    def applies(self, probe) -> bool:
        return bool(attention_blocks(probe))

    def legend(self, a):
        o = a.options or {}
        head = "averaged over heads" if o.get("head", -1) < 0 else f"head {o['head']}"
        what = "rolled out through every block" if o.get("attention") == "rollout" else f"of block {a.layer}"
        return f"where the class token attends, {head}, {what} (the same for every class)"

    def attribute(self, probe, fn, x, target, o):
        blocks = attention_blocks(probe)
        if not blocks:
            raise ValueError(f"Attention maps need a vision transformer's blocks (a self-attention over tokens); "
                             f"{probe.name} has none. Use Grad-CAM or saliency.")
        if o["layer"] is not None and o["attention"] == "block":
            chosen = probe.layer(o["layer"])
            if chosen.name not in [b.name for b in blocks]:
                raise ValueError(f"{chosen.name!r} is not a ViT block with attention; pick one of "
                                 f"{', '.join(b.name for b in blocks[-3:])}, ...")
            blocks_used = [chosen]
        else:
            blocks_used = blocks if o["attention"] == "rollout" else blocks[-1:]
        mods = {}
        for b in blocks_used:
            sub, m = attention_module(probe.view_module(b.name))
            mods[f"{b.name}.{sub}" if sub else b.name] = m
        xn = (x - fn.mean) / fn.std
        inputs = probe.module_inputs(xn, list(mods))
        heads = []
        with torch.no_grad():
            for name, m in mods.items():
                a = attention_weights(m, inputs[name])
                if o["head"] >= a.shape[1]:
                    raise ValueError(f"head {o['head']} is out of range: this model has {a.shape[1]} heads "
                                     f"(0..{a.shape[1] - 1}, or -1 for their average).")
                heads.append(a.mean(1) if o["head"] < 0 else a[:, o["head"]])
            a = rollout(heads) if o["attention"] == "rollout" else heads[-1]
            r = blocks_used[-1].reshape
            row = a[:, 0] if r.extra else a.mean(1)  # the class token's row (a model without one: every token's)
            grid = row[:, r.extra:].reshape(-1, 1, *r.grid)
            up = nn.functional.interpolate(grid, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return up, {"layer": blocks_used[-1].name, "coarse": grid[0, 0].cpu().numpy()}
