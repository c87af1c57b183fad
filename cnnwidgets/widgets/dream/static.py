"""The Dream panel as a matplotlib figure (for exported notebooks and papers)."""
from __future__ import annotations

import numpy as np

from .canvas import COLORS


def figure(panel, what: str = "all"):
    """``"current"``: the image (or atlas) and its objective curve; ``"gallery"``: the kept images; ``"all"``: both."""
    import matplotlib.pyplot as plt

    if what not in ("all", "current", "gallery"):
        raise ValueError(f"what must be 'all', 'current' or 'gallery', got {what!r}.")
    items = panel.gallery.items
    if what == "gallery" and not items:
        raise ValueError("The gallery is empty: run a dream first (each finished run is kept).")
    show_cur = what in ("all", "current")
    show_gal = what in ("all", "gallery") and bool(items)
    ncol = max(2 if show_cur else 1, min(len(items), 6) if show_gal else 1)
    grow = -(-len(items) // ncol) if show_gal else 0
    fig = plt.figure(figsize=(2.2 * ncol + 1, 3.6 * show_cur + 2.4 * grow), constrained_layout=True)
    gs = fig.add_gridspec(show_cur + grow, ncol, height_ratios=[1.5] * show_cur + [1] * grow)
    if show_cur:
        job = panel._job
        ax = fig.add_subplot(gs[0, : max(1, ncol // 2)])
        ax.imshow(panel.current if panel.current is not None else np.full((8, 8, 3), 235, np.uint8))
        ax.set_title(job.caption if job is not None else "no run yet", fontsize=8, wrap=True)
        ax.axis("off")
        ax2 = fig.add_subplot(gs[0, max(1, ncol // 2):])
        labels = job.labels if job is not None else []
        for i, h in enumerate(panel.history):
            ax2.plot(np.arange(1, len(h) + 1), h, color=COLORS[i % len(COLORS)],
                     label=labels[i] if len(panel.history) > 1 and i < len(labels) else None)
        if len(panel.history) > 1:
            ax2.legend(fontsize=6)
        ax2.set_xlabel("step")
        ax2.set_ylabel("objective")
        ax2.set_title("objective per step", fontsize=9)
    if show_gal:
        for i, item in enumerate(items):
            ax = fig.add_subplot(gs[show_cur + i // ncol, i % ncol])
            ax.imshow(item.rgb)
            ax.set_title(item.caption + (" (made before the weights changed)" if item.outdated else ""), fontsize=6,
                         wrap=True)
            ax.axis("off")
    return fig
