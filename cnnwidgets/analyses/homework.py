"""The NTU ML homework on explaining a CNN (HW9, 2021-2023), reproduced, and beside it what it meant to compute.

``PRESETS``: each part's settings as in the homework (registered attribution methods, so the Saliency panel
lists them: "SmoothGrad (as in the homework)"). ``CORRECTED``: the method each part stands for: the class
score's gradient beside the loss's, SmoothGrad with the noise the paper intends, Integrated Gradients multiplied
by (image - baseline), whose sum then equals f(image) - f(black) (``delta`` says how far it is; more steps
shrink it). The filter explanation is a job of the dream engine, its regularised recipe beside it. LIME keeps
the homework's ``start_label=1`` quirk (:func:`.attribution.methods.homework_lime.homework_segments`). The
homework's images are ``ToTensor()`` only: build the Probe with ``mean=0, std=1``.

>>> hw, fixed = compare(probe, image, "integrated_gradients", target=3)
>>> hw.delta, fixed.delta                      # completeness error: large for the homework's, ~0 corrected
>>> job = filter_explanation(probe, images, "cnn.6", 0)      # the homework's loop, a job of runner.Step
"""
from __future__ import annotations

import numpy as np

from .attribution import attribute as _attribute, minmax
from .attribution.methods.homework_lime import homework_picture
from .attribution.methods.homework_smoothgrad import homework_noise_std as noise_std  # noqa: F401
from .dream.filter_explanation import HOMEWORK, FilterExplanation, filter_explanation, filter_sum  # noqa: F401

#: the homework's parts: ``part -> (method, options)``, its exact settings
PRESETS = {
    "lime": ("lime_homework", {}),
    "saliency": ("saliency_homework", {}),
    "smoothgrad": ("smoothgrad_homework", {}),
    "integrated_gradients": ("integrated_gradients_homework", {}),
}
#: what each part intends: the class score's gradient; SmoothGrad's noise as the paper means it; IG x (image - black),
#: with 100 Gauss-Legendre points (the homework's 10 left-Riemann points can miss completeness by far)
CORRECTED = {
    "saliency": ("saliency", {}),
    "smoothgrad": ("smoothgrad_homework_fixed", {}),
    "integrated_gradients": ("integrated_gradients", {"steps": 100, "baseline": "black"}),
}
#: the homework's filter explanation: these convolutions of ``model.cnn`` (outputs before BatchNorm), filter 0
FILTER_LAYERS = ("cnn.6", "cnn.23")


def _part(part: str, table: dict) -> tuple[str, dict]:
    if part not in table:
        raise ValueError(f"The homework part is one of {', '.join(map(repr, table))}, not {part!r}.")
    return table[part]


def attribute(probe, image, part: str, target: int | None = None, *, corrected: bool = False, **opts):
    """The homework's map for ``part`` (``"lime"``, ``"saliency"``, ``"smoothgrad"``, ``"integrated_gradients"``)
    with its settings, or with ``corrected=True`` the method it stands for; ``opts`` override settings."""
    name, preset = _part(part, CORRECTED if corrected else PRESETS)
    return _attribute(probe, image, name, target, **{**preset, **opts})


def compare(probe, image, part: str, target: int | None = None, **opts):
    """``(as in the homework, corrected)`` maps of ``part`` for the same image and class; ``opts`` go to both."""
    _part(part, CORRECTED)
    return (attribute(probe, image, part, target, **opts), attribute(probe, image, part, target, corrected=True, **opts))


def picture(a, style: str = "homework") -> np.ndarray:
    """What the homework's ``imshow`` shows for an attribution: the saliency map (HxW in [0, 1], its ``cmap`` is
    ``"hot"``), SmoothGrad's and IG's three channels min-max scaled together as colours (HxWx3), LIME's photo
    with its superpixels tinted (green: for the class, red: against). Other methods: ``a.map`` min-max scaled.
    ``style="heat"``: |attribution| max over channels, min-max scaled (HxW), for any method but LIME."""
    if style not in ("homework", "heat"):
        raise ValueError(f"style is 'homework' or 'heat', not {style!r}.")
    if a.method == "lime_homework":
        shown = {int(f): float(a.raw[0][a.segments == f][0]) for f in np.unique(a.segments)
                 if a.raw[0][a.segments == f][0] != 0}
        return np.clip(homework_picture(a.image, a.segments, shown), 0, 1)
    if style == "heat":
        return minmax(np.abs(np.asarray(a.raw, dtype=np.float64)).max(0))
    if a.method.startswith(("smoothgrad_homework", "integrated_gradients")):
        return np.transpose(minmax(np.asarray(a.raw, dtype=np.float64)), (1, 2, 0)).squeeze()
    return minmax(np.asarray(a.map, dtype=np.float64))


def figure(images, rows: dict, titles=None, style: str = "homework", size: float = 2.2):
    """A matplotlib figure as the homework draws its results: the images in the first row (``titles`` above
    them), then one row per entry of ``rows`` (``{title: [Attribution per image]}``), each shown by
    :func:`picture` in ``style``."""
    import matplotlib.pyplot as plt

    images = list(images)
    fig, axs = plt.subplots(1 + len(rows), len(images), figsize=(size * len(images), size * (1 + len(rows))),
                            squeeze=False)
    for i, a in enumerate(images):
        axs[0][i].imshow(np.transpose(np.asarray(a), (1, 2, 0)).squeeze())
        if titles is not None:
            axs[0][i].set_title(titles[i], fontsize=9)
    for r, (title, maps) in enumerate(rows.items(), 1):
        for i, a in enumerate(maps):
            p = picture(a, style)
            axs[r][i].imshow(p, cmap="hot" if p.ndim == 2 else None, vmin=0, vmax=1)
        axs[r][0].set_ylabel(title, fontsize=9)
    for ax in axs.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def filter_figure(fe: FilterExplanation, size: float = 2.2):
    """The homework's filter-explanation figure: the images, the filter's activation on each, and the
    visualisations (each min-max scaled by itself, as the homework's ``normalize``). A regularised dream
    (``recipe="regularized"``) is one image of its own: drawn alone, titled."""
    import matplotlib.pyplot as plt

    vis = fe.visualizations
    if fe.recipe != "homework":
        fig, axs = plt.subplots(1, vis.shape[0], figsize=(size * 1.4 * vis.shape[0], size * 1.5), squeeze=False)
        for i, ax in enumerate(axs[0]):
            ax.imshow(vis[i].permute(1, 2, 0).squeeze().clamp(0, 1).numpy())
            ax.set_title(f"regularised dream:\nfilter {fe.channel} of {fe.layer}", fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        return fig
    n = fe.images.shape[0]
    fig, axs = plt.subplots(3, n, figsize=(size * n, size * 3), squeeze=False)
    for i in range(n):
        axs[0][i].imshow(fe.images[i].permute(1, 2, 0).squeeze().numpy())
        axs[1][i].imshow(minmax(fe.activations[i]).numpy())
        axs[2][i].imshow(minmax(vis[i].permute(1, 2, 0)).squeeze().numpy())
    for ax in axs.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, t in enumerate(["image", f"filter {fe.channel} of {fe.layer}", "visualisation (homework)"]):
        axs[r][0].set_ylabel(t, fontsize=9)
    fig.tight_layout()
    return fig
