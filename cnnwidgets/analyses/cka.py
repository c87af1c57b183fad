"""Centered kernel alignment (CKA): how similar two representations of the same images are.

Two estimators of HSIC, the statistic CKA normalises (``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``):

* ``"biased"`` — Kornblith et al. (2019), the formula of seed 000: ``HSIC = sum(HKH * HLH)`` with
  ``H = I - 1/n`` over the n x n Gram matrices of *all* images. Exact, but the Gram of all images needs
  the inner product of every pair of images, so a single pass must hold every image's features.
* ``"unbiased"`` — minibatch CKA, Nguyen et al. (2021): the unbiased HSIC (Song et al., 2012) of each
  minibatch's b x b Grams, averaged over minibatches. Memory does not depend on the number of images.

How :func:`layer_similarity` streams (memory, design):

* The images come from :func:`cnnwidgets.image_set` (a tensor, a list, a folder, a Dataset, a DataLoader), one
  batch at a time; "biased" needs their number up front (``len``), "unbiased" does not.
* One truncated forward per minibatch captures every requested layer (``probe.capture``).
* Each representation (a layer, or one channel of a layer) is turned into Gram matrices on the probe's
  device right away; the activations of the batch are then dropped.
* ``estimator="unbiased"``: per batch, the ``G x b x b`` Grams give all ``G x G`` HSIC values in one
  matrix multiply (flattened Grams ``G x b²``); these are summed in float64. Memory:
  one batch's activations + ``G·b²`` + ``G²`` — flat in n.
* ``estimator="biased"``: the full ``G x n x n`` Grams are filled block by block (float64, ``n²`` per
  representation is the only thing that grows with n). The cross blocks between batches need both batches'
  features, so earlier batches are held up to ``max_bytes``; beyond it the images are processed in
  groups (extra forwards, memory capped). It is impossible to get the exact full-batch Gram in one pass
  with less memory: the cross products need every earlier image's full feature vector.
* Grams are computed in the activations' own precision (float32 products of float32 activations, after
  subtracting a per-feature shift, which leaves centred Grams unchanged and avoids cancellation) and
  accumulated/centred in float64 (float64 inputs give float64 Grams throughout).
* The RBF kernel is derived from the linear Gram (``d²_ij = K_ii + K_jj - 2 K_ij``) with
  ``sigma = sigma_frac * sqrt(median d²)``, as in Kornblith et al.'s code (per minibatch for "unbiased").

Dead or constant representations (all images give the same features: ``HSIC(K, K) = 0``) have no defined
CKA; we return 1 on the diagonal (a representation equals itself), 0 off the diagonal, and list them in
:attr:`CKAResult.dead_rows` / :attr:`CKAResult.dead_cols`. No NaN is ever returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from ..imagesets import Batch, ImageSet, image_set, known_length
from ..runner import Step, run

MIN_IMAGES = 4
DEAD_TOL = 1e-10  # HSIC(K, K) <= DEAD_TOL * ||K||² (features shifted to ~mean 0)  ->  constant: rounding is ~1e-14


@dataclass
class CKAResult:
    """A CKA matrix with its row/column names and what was dead; ``np.asarray(result)`` gives the matrix."""

    matrix: np.ndarray
    rows: list[str]
    cols: list[str]
    dead_rows: list[str] = field(default_factory=list)
    dead_cols: list[str] = field(default_factory=list)
    images: int = 0  #: images the values are computed over (so far, for partial results)
    estimator: str = "unbiased"
    kernel: str = "linear"
    final: bool = True

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    @property
    def shape(self):
        return self.matrix.shape

    def value(self, row: str | int, col: str | int) -> float:
        i = self.rows.index(row) if isinstance(row, str) else row
        j = self.cols.index(col) if isinstance(col, str) else col
        return float(self.matrix[i, j])

    def __repr__(self) -> str:
        return (f"CKAResult({self.matrix.shape[0]}x{self.matrix.shape[1]}, {self.estimator} {self.kernel}, "
                f"{self.images} images, dead: {self.dead_rows + [d for d in self.dead_cols if d not in self.dead_rows]})")


# --- kernels and HSIC on Gram matrices (batched: ... x n x n) ---------------------------------------

CANCEL_RATIO = 8.0  #: trace(K) / trace(HKH) above this: the features' mean dominates their spread -> shift first


def _cpu_syrk(x: torch.Tensor):
    """``x @ x.T`` (float64 numpy) of a 2-D CPU tensor through numpy, whose ``a @ a.T`` is BLAS's symmetric
    rank-k product (``syrk``): half the multiplications of the general product torch uses. ``None`` where
    that path does not apply (GPU, batched, autograd, other dtypes)."""
    if x.ndim != 2 or x.device.type != "cpu" or x.requires_grad or x.dtype not in (torch.float32, torch.float64):
        return None
    xn = x.contiguous().numpy()
    return (xn @ xn.T).astype(np.float64, copy=False)


def _needs_shift(tr: float, total: float, n: int) -> bool:
    return tr > CANCEL_RATIO * (tr - total / n)  # trace(HKH) = trace(K) - 1'K1 / n


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """``x``: ``n x d`` (or ``G x n x d``) -> float64 Gram ``n x n`` (``G x n x n``).

    The product runs in the features' precision. Centred Grams do not change when a constant is subtracted
    from every image's features (``H(X - 1s) = HX``), so when the mean dominates (``trace K`` more than
    :data:`CANCEL_RATIO` times ``trace HKH``, where float32 sums would cancel) the features are shifted by
    their mean and the product is formed again; otherwise no copy of the features is made.
    """
    x = x.reshape(*x.shape[:-1], -1) if x.ndim > 1 else x
    n = x.shape[-2]
    g = _cpu_syrk(x)
    if g is not None:  # numpy throughout: torch's and BLAS's thread pools would wait on each other between calls
        if _needs_shift(float(np.trace(g)), float(g.sum()), n):
            g = _cpu_syrk(x - x.mean(dim=0, keepdim=True))
        return torch.from_numpy(g)
    g = _f64(x @ x.transpose(-1, -2))
    tr = torch.diagonal(g, dim1=-2, dim2=-1).sum(-1)
    if any(_needs_shift(float(a), float(b), n) for a, b in zip(tr.reshape(-1), g.sum((-2, -1)).reshape(-1))):
        xs = x - x.mean(dim=-2, keepdim=True)
        g = _f64(xs @ xs.transpose(-1, -2))
    return g


def gram_rbf(k_linear: torch.Tensor, sigma_frac: float = 1.0) -> torch.Tensor:
    """RBF Gram from a linear Gram: ``exp(-d² / (2 sigma_frac² median(d²)))`` (Kornblith et al.)."""
    diag = torch.diagonal(k_linear, dim1=-2, dim2=-1)
    d2 = (diag[..., :, None] + diag[..., None, :] - 2 * k_linear).clamp_min(0)
    n = d2.shape[-1]
    iu = torch.triu_indices(n, n, 1, device=d2.device)
    med = d2[..., iu[0], iu[1]].median(dim=-1).values if n > 1 else torch.zeros(d2.shape[:-2], dtype=d2.dtype)
    med = med[..., None, None]
    safe = torch.where(med > 0, med, torch.ones_like(med))
    k = torch.exp(-d2 / (2 * sigma_frac ** 2 * safe))
    return torch.where(med > 0, k, torch.ones_like(k))  # constant features -> constant kernel (dead)


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` with ``H = I - 1/n`` (without forming ``H``)."""
    return k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-1, -2), keepdim=True)


def _upper(g: torch.Tensor) -> torch.Tensor:
    """Symmetric ``G x n x n`` -> ``G x n(n+1)/2`` with ``<_upper(A), _upper(B)> = sum(A * B)``: half the work."""
    n = g.shape[-1]
    iu = torch.triu_indices(n, n, device=g.device)
    w = torch.full((iu.shape[1],), 2.0, dtype=g.dtype, device=g.device).sqrt()
    w[iu[0] == iu[1]] = 1.0
    return g[:, iu[0], iu[1]] * w


def hsic_biased(k: torch.Tensor, l: torch.Tensor | None = None) -> torch.Tensor:
    """``sum(HKH * HLH)`` for every pair: ``k`` ``G x n x n`` (and ``l`` ``G' x n x n``) -> ``G x G'``.

    As seed 000 (no ``1/(n-1)²`` factor; it cancels in CKA). One matrix multiply of flattened Grams.
    """
    fk = _upper(center_gram(k))
    fl = fk if l is None else _upper(center_gram(l))
    return fk @ fl.T


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor | None = None) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012) for every pair of ``G x n x n`` Grams (n >= 4) -> ``G x G'``."""
    n = k.shape[-1]
    if n < MIN_IMAGES:
        raise ValueError(f"The unbiased HSIC needs at least {MIN_IMAGES} images per batch (it divides by n-3); got {n}.")

    def parts(g):
        g = g.clone()
        torch.diagonal(g, dim1=-2, dim2=-1).zero_()
        s = g.sum(-1)
        return _upper(g), s, s.sum(-1)

    fk, sk, tk = parts(k)
    fl, sl, tl = (fk, sk, tk) if l is None else parts(l)
    out = fk @ fl.T + torch.outer(tk, tl) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (sk @ sl.T)
    return out / (n * (n - 3))


def _normalise(h: torch.Tensor, scale: torch.Tensor, rows: slice, cols: slice, same: bool):
    """HSIC matrix (all reps) -> CKA block ``rows x cols``, dead reps zeroed, no NaN."""
    h = h.double()
    self_h = torch.diagonal(h)
    dead = self_h <= DEAD_TOL * scale.clamp_min(torch.finfo(torch.float64).tiny)
    root = torch.sqrt(torch.where(dead, torch.ones_like(self_h), self_h))
    c = h[rows, cols] / (root[rows, None] * root[None, cols])
    c = torch.where(dead[rows, None] | dead[None, cols], torch.zeros_like(c), c)
    c = torch.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
    if same:
        c = 0.5 * (c + c.T)
        c.fill_diagonal_(1.0)
    return c.cpu().numpy(), dead[rows].cpu().numpy(), dead[cols].cpu().numpy()


def _kernel(k_lin: torch.Tensor, kernel: str, sigma: float) -> torch.Tensor:
    if kernel == "linear":
        return k_lin
    if kernel == "rbf":
        return gram_rbf(k_lin, sigma)
    raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}.")


def cka(x: torch.Tensor, y: torch.Tensor, *, estimator: str = "biased", kernel: str = "linear",
        sigma: float = 1.0) -> float:
    """CKA between two representations of the same n images (``n x ...`` each; n >= 4)."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must describe the same images: got {x.shape[0]} and {y.shape[0]} rows.")
    return float(cka_matrix([x, y], estimator=estimator, kernel=kernel, sigma=sigma).matrix[0, 1])


def cka_matrix(features, names: Sequence[str] | None = None, *, estimator: str = "biased",
               kernel: str = "linear", sigma: float = 1.0) -> CKAResult:
    """All-pairs CKA between representations already in memory (``n x ...`` each, or a dict of them)."""
    if isinstance(features, dict):
        names = list(features) if names is None else list(names)
        features = list(features.values())
    feats = [torch.as_tensor(f) for f in features]
    names = list(names) if names is not None else [str(i) for i in range(len(feats))]
    n = feats[0].shape[0]
    _check_n(n)
    if any(f.shape[0] != n for f in feats):
        raise ValueError(f"All representations must have the same number of images; got {[f.shape[0] for f in feats]}.")
    grams = torch.stack([gram_linear(f.reshape(n, -1)) for f in feats])
    return _from_grams(grams, names, names, estimator, kernel, sigma, n)


def _from_grams(grams, rows, cols, estimator, kernel, sigma, n, final=True):
    k = _kernel(grams, kernel, sigma)
    if estimator == "biased":
        h = hsic_biased(k)
    elif estimator == "unbiased":
        h = hsic_unbiased(k)
    else:
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}.")
    scale = (k.reshape(k.shape[0], -1) ** 2).sum(-1)
    if estimator == "unbiased":
        scale = scale / (n * max(n - 3, 1))
    c, dr, dc = _normalise(h, scale, slice(0, len(rows)), slice(0, len(rows)), True)
    return CKAResult(c, list(rows), list(cols), [r for r, d in zip(rows, dr) if d], [r for r, d in zip(cols, dc) if d],
                     n, estimator, kernel, final)


# --- streaming over a Probe ---------------------------------------------------------------------

def _check_n(n: int) -> None:
    if n < MIN_IMAGES:
        raise ValueError(
            f"CKA needs at least {MIN_IMAGES} images (the unbiased HSIC estimator divides by n-3); got {n}. "
            "Pass more images, e.g. cnnwidgets.sample_batch(32)."
        )


def _as_image_list(images):
    """(count, images by position) of any image set: ``imgs[i:j]`` gives a list of images i..j-1.

    Kept for panels that index the set; the analyses stream it with :func:`cnnwidgets.image_set`."""
    s = image_set(images)
    return len(s), _ByPosition(s)


class _ByPosition:
    def __init__(self, s: ImageSet):
        self.s = s

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self.s.image(i) for i in range(*key.indices(len(self.s)))]
        return self.s.image(key)


def _chunks(s: ImageSet, batch_size: int, start: int = 0) -> Iterator[Batch]:
    """The set's batches from image ``start`` on, with :func:`_splits`' boundaries: a last batch smaller than
    MIN_IMAGES joins the one before (at most two batches are held)."""
    prev = None
    for batch in s.batches(max(int(batch_size), MIN_IMAGES), start):
        if prev is not None and len(batch) < MIN_IMAGES:  # only the last batch is short
            prev = _join(prev, batch)
            continue
        if prev is not None:
            yield prev
        prev = batch
    if prev is not None:
        yield prev


def _join(a: Batch, b: Batch) -> Batch:
    if isinstance(a.images, torch.Tensor) and isinstance(b.images, torch.Tensor) and a.images.shape[1:] == b.images.shape[1:]:
        images = torch.cat([a.images, b.images])
    elif isinstance(a.images, np.ndarray) and isinstance(b.images, np.ndarray) and a.images.shape[1:] == b.images.shape[1:]:
        images = np.concatenate([a.images, b.images])
    else:
        images = list(a.images) + list(b.images)
    labels = None if a.labels is None or b.labels is None else a.labels + b.labels
    return Batch(images, labels, a.indices + b.indices)


def _splits(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch boundaries; a last batch smaller than 4 images joins the one before (the unbiased HSIC needs 4)."""
    b = max(int(batch_size), MIN_IMAGES)
    cuts = list(range(0, n, b)) + [n]
    out = [(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]
    if len(out) > 1 and out[-1][1] - out[-1][0] < MIN_IMAGES:
        out[-2:] = [(out[-2][0], n)]
    return out


class _Source:
    """One probe, its layers, and how a batch of activations becomes representations (``G x b x d``)."""

    def __init__(self, probe, layers, mode: str):
        self.probe = probe
        self.layers = [probe.layer(l) for l in layers]  # KeyError with close names for unknown ones
        self.mode = mode
        if mode == "channels":
            l = self.layers[0]
            if not l.spatial:
                raise ValueError(f"Channel CKA needs a layer with maps (C x H x W); {l.name} gives {l.shape}.")
            self.names = [f"{l.name}:{c}" for c in range(l.channels)]
        else:
            self.names = [l.name for l in self.layers]
        self.shape = None

    def features(self, batch) -> list[torch.Tensor]:
        x = self.probe.prepare(batch)
        if self.shape is None:
            self.shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"Images have different sizes: a batch came out as {tuple(x.shape[1:])}, an earlier one as {self.shape}. "
                "Resize the images to one size, or give the Probe a Preprocess with a crop size."
            )
        acts = self.probe.capture(x, [l.name for l in self.layers])
        b = x.shape[0]
        if self.mode == "channels":
            a = acts[self.layers[0].name]
            return [a.reshape(b, a.shape[1], -1).transpose(0, 1)]  # C x b x HW
        return [acts[l.name].reshape(1, b, -1) for l in self.layers]


def _grams(fa: list[torch.Tensor], fb: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Gram blocks ``G x b_a x b_b`` for all representations (same list order), accumulated in float64."""
    out = []
    for i, a in enumerate(fa):
        g = a @ (a if fb is None else fb[i]).transpose(-1, -2)
        out.append(_f64(g))
    return torch.cat(out)


def _f64(t: torch.Tensor) -> torch.Tensor:
    """float64 for the accumulation (on the CPU for MPS, which has no float64)."""
    return t.cpu().double() if t.device.type == "mps" else t.double()


def _shift(feats: list[torch.Tensor], shifts: list[torch.Tensor] | None):
    """Subtract a fixed per-feature shift (the first batch's mean): centred Grams unchanged, less cancellation."""
    if shifts is None:
        shifts = [f.mean(dim=-2, keepdim=True) for f in feats]
    return [f - s for f, s in zip(feats, shifts)], shifts


def similarity_steps(sources: list[_Source], images, *, batch_size: int = 32, estimator: str = "unbiased",
                     kernel: str = "linear", sigma: float = 1.0, max_bytes: int = 1 << 30) -> Iterator[Step]:
    """Core generator: rows are the first source's representations, columns the last one's."""
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}.")
    _kernel(torch.zeros(1, 2, 2, dtype=torch.float64), kernel, sigma)  # validate early
    s = image_set(images)
    n = known_length(s)
    if n is not None:
        _check_n(n)
    elif estimator == "biased":
        raise ValueError(f"The 'biased' (exact) estimator needs the number of images up front, and {s.what} does not "
                         "know it (len() fails). Use estimator='unbiased' (minibatch CKA), or give the set a length.")
    rows = sources[0].names
    cols = sources[-1].names
    same = len(sources) == 1
    nr = len(rows)
    row_sl = slice(0, nr)
    col_sl = row_sl if same else slice(nr, None)
    device = sources[0].probe.device

    def feats_of(batch):
        out = []
        for src in sources:
            out += src.features(batch.images)
        return out

    def result(h, scale, m, final=False):
        c, dr, dc = _normalise(h, scale, row_sl, col_sl, same)
        return CKAResult(c, list(rows), list(cols), [r for r, d in zip(rows, dr) if d], [r for r, d in zip(cols, dc) if d],
                         m, estimator, kernel, final)

    if estimator == "unbiased":
        h = scale = None
        shifts = None
        total = len(_splits(n, batch_size)) if n is not None else None
        b = 0
        for i, batch in enumerate(_chunks(s, batch_size)):
            m = len(batch)
            if m < MIN_IMAGES:  # a set of fewer than 4 images (a short batch is joined to the one before)
                _check_n(m)
            b += m
            f, shifts = _shift(feats_of(batch), shifts)
            del batch
            k = _kernel(_grams(f), kernel, sigma)
            del f
            hb = hsic_unbiased(k)
            sb = (k.reshape(k.shape[0], -1) ** 2).sum(-1) / (m * (m - 3))
            h = hb if h is None else h + hb
            scale = sb if scale is None else scale + sb
            del k
            final = total is not None and i + 1 == total
            yield Step(i + 1, total, result(h, scale, b, final), {"images": b, "forwards": i + 1})
        if h is None:
            _check_n(0)
        if not final:  # the length was unknown: the last partial result is the final one
            yield Step(i + 1, i + 1, result(h, scale, b, True), {"images": b, "forwards": i + 1})
        return

    # biased: the full G x n x n Grams, filled block by block. Batches of the current group are held
    # (at most max_bytes of features); every later batch adds its cross blocks with them.
    splits = _splits(n, batch_size)
    stream = _chunks(s, batch_size)
    f0, shifts = _shift(feats_of(next(stream)), None)
    per_image = sum(t.numel() * t.element_size() for t in f0) / (splits[0][1] - splits[0][0])
    hold_images = max(1, int(max_bytes // max(per_image, 1.0)))
    groups: list[list[int]] = []  # indices into splits
    for i, (a, b) in enumerate(splits):
        if groups and b - splits[groups[-1][0]][0] <= hold_images:
            groups[-1].append(i)
        else:
            groups.append([i])
    total = sum(len(splits) - g[0] for g in groups)
    grams = torch.zeros(sum(t.shape[0] for t in f0), n, n, dtype=torch.float64,
                        device="cpu" if device.type == "mps" else device)
    forwards = 0
    last = None
    if len(groups) > 1 and not s._repeatable:
        raise ValueError(f"{n} images do not fit in max_bytes={max_bytes} for the exact ('biased') estimator, which then "
                         f"reads them in {len(groups)} passes, but {s.what} gives a new order each pass. Use a "
                         "DataLoader with shuffle=False, a larger max_bytes, or estimator='unbiased'.")
    for group in groups:
        g0 = splits[group[0]][0]
        g1 = splits[group[-1]][1]
        buf: list[torch.Tensor] | None = None  # this group's features, one (G x images x d) buffer per representation
        filled = 0
        if stream is None:  # a later group: read the set again from its first image
            stream = _chunks(s, batch_size, g0)
        for i in range(group[0], len(splits)):
            a, b = splits[i]
            if f0 is not None:
                f, f0 = f0, None
            else:
                batch = next(stream, None)
                if batch is None or batch.indices[0] != a or len(batch) != b - a:
                    raise ValueError(f"{s.what} gave other images than its length ({n}) says: "
                                     f"{'it ended' if batch is None else f'images {batch.indices[0]}..{batch.indices[-1]}'} "
                                     f"where images {a}..{b - 1} were expected.")
                f, _ = _shift(feats_of(batch), shifts)
                del batch
            forwards += 1
            if buf is None:
                buf = [t.new_empty(t.shape[0], g1 - g0, t.shape[2]) for t in f]
            if i in group:  # hold it; its Gram rows with everything held so far, one matrix multiply
                for t, h in zip(f, buf):
                    h[:, a - g0:b - g0] = t
                filled = b - g0
                blk = _grams(f, [h[:, :filled] for h in buf])
                grams[:, a:b, g0:b] = blk
                grams[:, g0:b, a:b] = blk.transpose(-1, -2)
                k = _kernel(grams[:, :b, :b], kernel, sigma)  # the top-left b x b block is complete
                last = result(hsic_biased(k), (k.reshape(k.shape[0], -1) ** 2).sum(-1), b, b == n)
            else:  # a later batch: its cross blocks with the whole held group
                blk = _grams(f, [h[:, :filled] for h in buf])
                grams[:, a:b, g0:g1] = blk
                grams[:, g0:g1, a:b] = blk.transpose(-1, -2)
            del f
            yield Step(forwards, total, last, {"images": last.images, "forwards": forwards, "groups": len(groups)})
        buf = None
        if next(stream, None) is not None:
            raise ValueError(f"{s.what} gave more images than its length ({n}) says.")
        stream = None


def _layers_arg(probe, layers):
    if layers is None:
        return list(probe.layers.names)
    if isinstance(layers, (str, int)):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("Got an empty list of layers; pass None for all conv layers.")
    return [probe.layer(l).name for l in layers]


def layer_similarity_steps(probe, images, layers=None, *, batch_size: int = 32, estimator: str = "unbiased",
                           kernel: str = "linear", sigma: float = 1.0, max_bytes: int = 1 << 30) -> Iterator[Step]:
    """Generator of :class:`Step`\\ s whose ``value`` is the L x L :class:`CKAResult` so far (``None`` on
    steps that only stream images for an earlier group in the biased multi-pass case)."""
    src = _Source(probe, _layers_arg(probe, layers), "layers")
    return similarity_steps([src], images, batch_size=batch_size, estimator=estimator, kernel=kernel, sigma=sigma,
                            max_bytes=max_bytes)


def layer_similarity(probe, images, layers=None, **kwargs) -> CKAResult:
    """CKA between every pair of ``layers`` (default: all conv layers) over ``images`` (at least 4; any set
    :func:`cnnwidgets.image_set` takes: a tensor, a list, a folder, a Dataset, a DataLoader — streamed).

    ``estimator="unbiased"`` (default, minibatch CKA: memory flat in the number of images) or
    ``"biased"`` (exact full-batch value of Kornblith et al./seed 000); ``kernel="linear"`` or ``"rbf"``
    (``sigma`` = fraction of the median distance); ``batch_size`` images per forward.
    """
    return run(layer_similarity_steps(probe, images, layers, **kwargs)).value


def channel_similarity_steps(probe, images, layer, *, batch_size: int = 32, estimator: str = "biased",
                             kernel: str = "linear", sigma: float = 1.0, max_bytes: int = 1 << 30) -> Iterator[Step]:
    """Generator version of :func:`channel_similarity`."""
    src = _Source(probe, [probe.layer(layer).name], "channels")
    return similarity_steps([src], images, batch_size=batch_size, estimator=estimator, kernel=kernel, sigma=sigma,
                            max_bytes=max_bytes)


def channel_similarity(probe, images, layer, **kwargs) -> CKAResult:
    """C x C CKA between the channels of ``layer``: the examples are the images, a channel's representation
    of an image is its H x W map. All C Grams at once (``C x n x n``), all pairs in one matrix multiply."""
    return run(channel_similarity_steps(probe, images, layer, **kwargs)).value


def model_similarity_steps(probe_a, probe_b, images, layers_a=None, layers_b=None, *, batch_size: int = 32,
                           estimator: str = "unbiased", kernel: str = "linear", sigma: float = 1.0,
                           max_bytes: int = 1 << 30) -> Iterator[Step]:
    """Generator version of :func:`model_similarity`."""
    sa, sb = tuple(probe_a.transform.input_size), tuple(probe_b.transform.input_size)
    if sa != sb:
        raise ValueError(
            f"The two models take different input sizes ({sa[0]}x{sa[1]} and {sb[0]}x{sb[1]}), so they would not see "
            f"the same pixels. Give both Probes one size, e.g. Probe(model, input_size={sa[0]})."
        )
    a = _Source(probe_a, _layers_arg(probe_a, layers_a), "layers")
    b = _Source(probe_b, _layers_arg(probe_b, layers_b), "layers")
    return similarity_steps([a, b], images, batch_size=batch_size, estimator=estimator, kernel=kernel, sigma=sigma,
                            max_bytes=max_bytes)


def model_similarity(probe_a, probe_b, images, layers_a=None, layers_b=None, **kwargs) -> CKAResult:
    """CKA between the layers of model A (rows) and model B (columns) on the same images."""
    return run(model_similarity_steps(probe_a, probe_b, images, layers_a, layers_b, **kwargs)).value


def cluster_order(matrix) -> np.ndarray:
    """Order of rows/columns that puts similar ones together (average-linkage clustering on 1 - CKA)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[0] < 3:
        return np.arange(m.shape[0])
    d = np.clip(1.0 - 0.5 * (m + m.T), 0.0, None)
    np.fill_diagonal(d, 0.0)
    return leaves_list(linkage(squareform(d, checks=False), method="average", optimal_ordering=m.shape[0] <= 256))
