"""The Saliency panel drawn with matplotlib (for ``save()`` and exported notebooks)."""
from __future__ import annotations

from ...analyses import attribution_display as D


def figure(panel, view: str):
    import matplotlib.pyplot as plt
    from matplotlib import colors

    d = panel.display
    if view == "all" and panel.all_results:
        items = [(a, a.label) for a in panel.all_results.values()]
    elif view == "compare" and panel.compare_results:
        items = [(a, f"{a.model}\n{a.target_name} p={a.prob:.0%}") for a in panel.compare_results]
    elif view == "sanity" and panel.sanity_steps:
        items = [(s.value, f"ρ = {s.info['spearman']:.2f}\n{s.info['label'][:30]}") for s in panel.sanity_steps]
    else:
        a = panel.result
        if a is None:
            raise RuntimeError("Nothing to draw yet: the map is still being computed (call .join()).")
        rgb, hi = d.render(a)
        sign = d.sign.value
        fig, ax = plt.subplots(1, 2, figsize=(9, 4.4))
        ax[0].imshow(D.image_hwc(a.image))
        ax[0].set_title("image (as the model sees it)", fontsize=10)
        ax[1].imshow(rgb)
        ax[1].set_title(f"{a.label}" + (f" · {a.layer}" if a.layer else "") + (f" ({a.progress})" if a.partial else ""),
                        fontsize=10)
        for x in ax:
            x.axis("off")
        norm = colors.Normalize(-hi if sign == "signed" else 0, hi)
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=d.colormap()), ax=ax[1], fraction=0.046, pad=0.04)
        fig.suptitle(f"{a.model}: why “{a.target_name}” ({a.target}, p = {a.prob:.1%})?")
        return fig
    n = len(items)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1), squeeze=False)
    for ax, (a, title) in zip(axes[0], items):
        ax.imshow(d.render(a)[0])
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    first = items[0][0]
    fig.suptitle({"all": f"{first.model}: all methods for “{first.target_name}”",
                  "compare": f"{first.label}: models compared",
                  "sanity": f"Sanity check, {first.label}: top layers randomised step by step"}[view])
    return fig
