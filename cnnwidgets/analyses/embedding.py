"""Layer features over an image set: PCA / t-SNE maps, and the images that excite a channel most.

Seed 001's appendix runs scikit-learn's t-SNE on every layer's features of a batch; seed 002's
"filter explanation" asks which inputs excite a filter. Both start from one streamed pass over any
set of images :func:`cnnwidgets.image_set` takes (a folder, a Dataset, a DataLoader, a tensor...),
one batch in memory at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..imagesets import image_set, known_length
from ..runner import Step, run

POOLS = ("mean", "max", "flatten")


def _pool(t: torch.Tensor, pool: str) -> torch.Tensor:
    if t.ndim <= 2:
        return t.reshape(t.shape[0], -1)
    if pool == "mean":
        return t.flatten(2).mean(-1)
    if pool == "max":
        return t.flatten(2).amax(-1)
    if pool == "flatten":
        return t.flatten(1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")


def _batches(probe, images, batch_size: int):
    """(batch, number of images or None, prepared batch) over any image set, one batch at a time."""
    s = image_set(images)
    n = known_length(s)
    for batch in s.batches(batch_size):
        yield batch, n, probe.prepare(batch.images)


def features_steps(probe, images, layers, pool: str = "mean", batch_size: int = 32, also=()) -> Iterator[Step]:
    """Stream pooled features ``{layer: N x C}`` over ``images`` (any image set); yields a Step per minibatch.

    The last Step's ``info`` holds ``"labels"`` (the label of each row, ints, or None when the set has none)
    and ``"indices"`` (each row's position in the set), as seen in this pass, and for each pooling in ``also``
    (e.g. ``("max",)``) the same features pooled that way, ``info["pooled"][pool][layer]``: one pass gives both the
    map's features and every channel's top images."""
    targets = [probe.layer(l) for l in ([layers] if isinstance(layers, (str, int)) else layers)]
    pools = [pool] + [p for p in also if p != pool]
    for p in pools:
        _pool(torch.zeros(1, 1, 1, 1), p)  # a clear error for an unknown pooling, before the first forward
    parts: dict[tuple, list[torch.Tensor]] = {(p, l.name): [] for p in pools for l in targets}
    labels: list[int] | None = []
    indices: list[int] = []
    done = 0
    for batch, n, x in _batches(probe, images, batch_size):
        got = probe.capture(x, [l.name for l in targets])
        for name, t in got.items():
            for p in pools:
                parts[(p, name)].append(_pool(t.float(), p).cpu())
        labels = None if labels is None or batch.labels is None else labels + list(batch.labels)
        indices += batch.indices
        done += len(batch)
        yield Step(done, n, None)
    if not indices:
        raise ValueError("The image set gave no images.")
    pooled = {p: {l.name: torch.cat(parts[(p, l.name)]).numpy() for l in targets} for p in pools}
    yield Step(done, done, pooled[pool], {"labels": labels, "indices": np.asarray(indices), "pooled": pooled})


def features(probe, images, layers, pool: str = "mean", batch_size: int = 32) -> dict[str, np.ndarray]:
    """Pooled features ``{layer: N x C}`` (global average pooling of each channel by default) over any image set."""
    return run(features_steps(probe, images, layers, pool, batch_size)).value


def pca(feats: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project ``N x D`` features on their top ``k`` principal components: (``N x k``, explained variance ratios)."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 feature vectors N x D, got shape {f.shape}.")
    f = f - f.mean(0, keepdims=True)
    u, s, vt = np.linalg.svd(f, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    k = min(k, vt.shape[0])
    out = u[:, :k] * s[:k]
    if out.shape[1] < 2:  # one component only (one feature): pad so it still plots
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out, ratio[:k]


def tsne(feats: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """t-SNE of ``N x D`` features to 2-D (scikit-learn), after PCA to at most 50 dims as usual."""
    from sklearn.manifold import TSNE

    f = np.asarray(feats, dtype=np.float64)
    n = f.shape[0]
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 images, got {n}; use PCA for fewer.")
    if f.shape[1] > 50:
        f = pca(f, 50)[0]
    perplexity = float(min(perplexity, (n - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(f)


def embed(feats: np.ndarray, method: str = "pca", **kw) -> np.ndarray:
    """2-D coordinates of ``N x D`` features by ``"pca"`` or ``"tsne"``."""
    if method == "pca":
        return pca(feats, 2)[0]
    if method == "tsne":
        return tsne(feats, **kw)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")


@dataclass
class TopImages:
    """The images of a set that excite one channel most."""

    layer: str
    channel: int
    indices: np.ndarray  #: positions in the image set, best first
    scores: np.ndarray  #: the channel's activation (``score`` reduction) for each


def _check_top(probe, layer, channel, k, score):
    from ..probe import whole_number

    l = probe.layer(layer)
    channel = whole_number(channel, "the channel")
    k = whole_number(k, "k")
    if l.channels is None or not 0 <= channel < l.channels:
        raise IndexError(f"Channel {channel} is out of range for {l.name} ({l.channels} channels: 0..{(l.channels or 1) - 1}).")
    if k < 1:
        raise ValueError(f"k is how many images to show, at least 1; got {k}.")
    if score not in ("max", "mean"):
        raise ValueError(f"score must be 'max' or 'mean', got {score!r}.")
    return l, channel, k


@dataclass
class EmbeddingResult:
    """A 2-D map of a layer's pooled features over an image set, and what it was made from."""

    coords: np.ndarray  #: N x 2
    layer: str
    method: str  #: "pca" or "tsne"
    pool: str  #: how each channel's map became one number: "mean" or "max" over space
    labels: list | None  #: each row's label (int), or None
    indices: np.ndarray  #: each row's position in the image set
    pooled: dict  #: {"mean": N x C, "max": N x C}: the layer's features both ways (each channel's top images)

    def top(self, channel: int, k: int = 9, score: str = "max") -> TopImages:
        """The ``k`` images of the set that excite ``channel`` most, from this pass's features (no forward)."""
        return top_from_scores(self.layer, channel, self.pooled[score][:, channel], self.indices, k)


def top_from_scores(layer: str, channel: int, scores, indices, k: int) -> TopImages:
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[:k]
    return TopImages(layer, channel, np.asarray(indices)[order], scores[order])


def embedding_steps(probe, images, layer, method: str = "pca", pool: str = "mean", batch_size: int = 32) -> Iterator[Step]:
    """The Embedding panel's job: stream the layer's pooled features over ``images`` (a Step per minibatch), then
    place them in 2-D (``"pca"`` or ``"tsne"``); the last Step's value is an :class:`EmbeddingResult`, which also
    answers every channel's top images without another pass."""
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    name = probe.layer(layer).name
    last = None
    for last in features_steps(probe, images, name, pool=pool, batch_size=batch_size, also=("mean", "max")):
        if last.value is None:
            yield last
    info = last.info
    coords = embed(last.value[name], method)
    pooled = {p: v[name] for p, v in info["pooled"].items()}
    yield Step(last.step, last.total, EmbeddingResult(coords, name, method, pool, info["labels"], info["indices"], pooled),
               {"labels": info["labels"], "indices": info["indices"]})


def top_images_steps(probe, images, layer, channel: int, k: int = 9, score: str = "max", batch_size: int = 32) -> Iterator[Step]:
    """Stream over ``images`` (any image set) keeping the ``k`` that excite ``channel`` of ``layer`` most (by its
    max or mean over space)."""
    l, channel, k = _check_top(probe, layer, channel, k, score)
    all_scores: list[torch.Tensor] = []
    indices: list[int] = []
    for batch, n, x in _batches(probe, images, batch_size):
        t = probe.capture(x, [l.name])[l.name][:, channel].float()
        s = t.flatten(1).amax(1) if score == "max" else t.flatten(1).mean(1)
        all_scores.append(s.cpu())
        indices += batch.indices
        yield Step(len(indices), n, None)
    if not indices:
        raise ValueError("The image set gave no images.")
    yield Step(len(indices), len(indices), top_from_scores(l.name, channel, torch.cat(all_scores).numpy(), indices, k))


def top_images(probe, images, layer, channel: int, k: int = 9, score: str = "max", batch_size: int = 32) -> TopImages:
    """The ``k`` images that excite ``channel`` of ``layer`` most (seed 002's filter explanation)."""
    return run(top_images_steps(probe, images, layer, channel, k, score, batch_size)).value
