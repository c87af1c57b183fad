"""The FeatureMaps panel as a static matplotlib figure (for exported notebooks and papers)."""
from __future__ import annotations

import numpy as np

from ... import render
from ...analyses import stats
from .views import fmt


def static_figure(fm):
    """The input, the current page of the grid and the large view of the selected channel."""
    import matplotlib.pyplot as plt

    layer = fm.probe.layer(fm.layer)
    acts = fm.activations
    if acts is None:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{layer.label}\n(nothing to show: {fm.message.value or 'no activations'})", ha="center", va="center")
        return fig
    inp = render.decode(fm.input_view.value) if fm.input_view.value else None
    if not fm._is_maps():
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 3]})
        if inp is not None:
            a0.imshow(inp)
        a0.set_title("input")
        a0.axis("off")
        v = np.asarray(acts).reshape(-1)
        a1.bar(np.arange(len(v)), v, width=1.0, color="#3b6ea8")
        a1.set_xlabel("unit")
        a1.set_ylabel("activation")
        a1.set_title(layer.label)
        fig.tight_layout()
        return fig
    fig = plt.figure(figsize=(15, 5.2))
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 2.4, 1.4], wspace=0.08)
    a0 = fig.add_subplot(gs[0])
    if inp is not None:
        a0.imshow(inp)
    a0.set_title("input")
    a0.axis("off")
    a1 = fig.add_subplot(gs[1])
    if fm._grid_rgb is not None:
        a1.imshow(fm._grid_rgb, interpolation="nearest")
    a1.set_title(f"{layer.label}\n{fm.plan.label(fm.page)}" + (f", {fm._ndead} dead hidden" if fm._ndead else ""),
                 fontsize=10)
    a1.axis("off")
    a2 = fig.add_subplot(gs[2])
    c = int(fm.channel)
    m = acts[c]
    s = stats.describe(m)
    lo, hi = (fm._range if fm.norm == "layer" else (s.min, s.max))
    cm = plt.get_cmap(fm.cmap).with_extremes(bad="magenta")
    im = a2.imshow(np.ma.masked_invalid(m), cmap=cm, vmin=lo, vmax=hi if hi > lo else lo + 1e-12, interpolation="nearest")
    a2.set_title(f"channel {c}: {fmt(s.min)} … {fmt(s.max)}", fontsize=10)
    a2.axis("off")
    fig.colorbar(im, ax=a2, fraction=0.046, pad=0.03)
    return fig
