"""k-nearest-neighbour accuracy of each layer's features: where, going deeper, the classes become separable.

One streamed pass over a labelled image set (any kind :func:`cnnwidgets.image_set` takes) pools every chosen
layer's maps (mean over space by default); then each image's class is guessed from its ``k`` nearest other images
(cosine similarity of the pooled features, majority vote, a tie going to the class of the nearest), leave-one-out,
or from a held-out split (``test=0.25``: a quarter of the set, drawn by a fixed seed, is guessed from the rest). A job of
:class:`~cnnwidgets.runner.Step` items: a Step per minibatch, then one per layer with the accuracies so far.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from ..runner import Step, run
from .embedding import features_steps


@dataclass
class KNNResult:
    """Accuracy of a k-NN vote on each layer's pooled features (layers in forward order)."""

    layers: list[str]
    accuracy: list[float]  #: fraction guessed right, per layer computed so far
    k: int
    images: int  #: images in the pass
    guessed: int  #: images whose class was guessed (all of them leave-one-out, the held-out ones for a split)
    chance: float  #: accuracy of always guessing the most frequent class
    classes: list[str] | None = None
    how: str = "leave-one-out"
    final: bool = True
    per_class: list[dict] = field(default_factory=list)  #: per layer: {class label: accuracy}

    def __repr__(self) -> str:
        rows = ", ".join(f"{l}: {a:.1%}" for l, a in zip(self.layers, self.accuracy))
        return f"KNNResult(k={self.k}, {self.how}, {self.images} images, chance {self.chance:.1%}; {rows})"


def _normalise(f: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(f, dtype=np.float32)).reshape(len(f), -1)
    t = t - t.mean(0, keepdim=True)  # centred: cosine on offsets from the set's mean, not on the shared positive part
    return torch.nn.functional.normalize(t, dim=1)


def knn_predict(train: np.ndarray, train_labels, query: np.ndarray | None = None, k: int = 5, chunk: int = 1024) -> np.ndarray:
    """Class guessed for each query row from its ``k`` most cosine-similar train rows (majority, ties to the nearest).
    ``query=None``: leave-one-out over ``train`` (a row is not its own neighbour)."""
    y = torch.as_tensor(np.asarray(train_labels, dtype=np.int64))
    loo = query is None
    a = _normalise(train)
    if loo:
        b = a
    else:
        both = _normalise(np.concatenate([np.asarray(train), np.asarray(query)]))  # one centring for both
        a, b = both[: len(train)], both[len(train):]
    k = min(int(k), len(a) - (1 if loo else 0))
    n_classes = int(y.max()) + 1
    out = []
    for s in range(0, len(b), chunk):
        sim = b[s : s + chunk] @ a.T
        if loo:
            idx = torch.arange(s, min(s + chunk, len(b)))
            sim[torch.arange(len(idx)), idx] = -float("inf")
        top = sim.topk(k, dim=1).indices  # nearest first
        votes = torch.zeros(len(top), n_classes)
        votes.scatter_add_(1, y[top], torch.ones(top.shape))
        # a tie goes to the class of the nearest neighbour among the tied classes
        best = votes.max(1, keepdim=True).values
        tied = votes == best
        first = tied.gather(1, y[top])  # is each neighbour's class among the tied ones, nearest first
        out.append(y[top].gather(1, first.float().argmax(1, keepdim=True)).squeeze(1))
    return torch.cat(out).numpy()


def knn_steps(probe, images, layers=None, *, k: int = 5, pool: str = "mean", test: float | None = None,
              batch_size: int = 32) -> Iterator[Step]:
    """The job: pooled features of ``layers`` (default: every conv layer) over ``images`` in one pass, then the k-NN
    accuracy of each layer; the last Step's value is a :class:`KNNResult`."""
    from ..imagesets import image_set
    from ..probe import whole_number

    k = whole_number(k, "k")
    if k < 1:
        raise ValueError(f"k is how many neighbours vote, at least 1; got {k}.")
    if test is not None and not 0 < float(test) < 1:
        raise ValueError(f"test is the fraction of the set held out to be guessed, between 0 and 1; got {test!r}.")
    s = image_set(images)
    names = [l.name for l in (probe.require_layers("k-NN accuracy") if layers is None else probe._resolve(layers))]
    last = None
    for last in features_steps(probe, s, names, pool=pool, batch_size=batch_size):
        if last.value is None:
            yield last
    labels = last.info["labels"]
    if labels is None:
        raise ValueError(f"k-NN accuracy needs the images' classes, and {s.description} has no labels: give a folder "
                         "with one sub-folder per class, a Dataset of (image, label), or image_set(x, labels=y).")
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if n < 2:
        raise ValueError(f"k-NN accuracy needs at least 2 labelled images; got {n}.")
    if test is None:
        how, held = "leave-one-out", None
        truth, known = y, y
    else:
        m = min(n - 1, max(1, int(round(n * float(test)))))
        order = np.random.default_rng(0).permutation(n)  # a fixed draw: the same split every run
        held, kept = order[:m], order[m:]
        how = f"{m} held-out images guessed from the other {n - m}"
        truth, known = y[held], y[kept]
    chance = float(np.mean(truth == int(np.argmax(np.bincount(known)))))
    res = KNNResult([], [], k, n, len(truth), chance, s.classes, how, final=False)
    for i, name in enumerate(names):
        f = last.value[name]
        guess = knn_predict(f, y, k=k) if held is None else knn_predict(f[kept], known, f[held], k)
        right = guess == truth
        res.layers.append(name)
        res.accuracy.append(float(right.mean()))
        res.per_class.append({int(c): float(right[truth == c].mean()) for c in np.unique(truth)})
        res.final = i == len(names) - 1
        yield Step(n + i + 1, n + len(names), replace(res, layers=list(res.layers), accuracy=list(res.accuracy),
                                                      per_class=list(res.per_class)))


def knn_accuracy(probe, images, layers=None, **kwargs) -> KNNResult:
    """k-NN accuracy of each layer's pooled features over a labelled image set (see :func:`knn_steps`)."""
    return run(knn_steps(probe, images, layers, **kwargs)).value
