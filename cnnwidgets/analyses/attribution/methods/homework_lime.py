"""The NTU ML homework's LIME (HW9: the ``lime`` package's ``LimeImageExplainer`` with its defaults, SLIC
superpixels, 11 features positive and negative), reproduced exactly without the ``lime`` package."""
import numpy as np
import torch

from ..base import Method, Option, Pace, Partial, register

KERNEL_WIDTH = 0.25  #: LimeImageExplainer's default


def homework_segments(image_chw: np.ndarray) -> np.ndarray:
    """The homework's superpixels: ``slic(image, n_segments=200, compactness=1, sigma=1, start_label=1)`` on the
    HxWxC float64 image. Labels start at 1, while the ``lime`` package numbers features from 0: its feature 0
    covers no pixel and the last superpixel is never switched off (a quirk the homework keeps)."""
    from skimage.segmentation import slic

    img = np.transpose(np.asarray(image_chw), (1, 2, 0)).astype(np.float64)
    return slic(img, n_segments=200, compactness=1, sigma=1, start_label=1)


def homework_samples(segments: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """``samples x K`` 0/1 choices as ``lime`` draws them after ``np.random.seed(seed)``: one draw of the
    segmentation seed it does not use, then ``randint(0, 2)``; the first row keeps every feature."""
    rs = np.random.RandomState(seed)
    rs.randint(0, high=1000)
    k = np.unique(segments).shape[0]
    data = rs.randint(0, 2, samples * k).reshape((samples, k))
    data[0, :] = 1
    return data


def homework_images(x: torch.Tensor, segments: np.ndarray, data: np.ndarray) -> torch.Tensor:
    """The images ``lime`` scores for choice rows ``data``: feature ``z`` off replaces the pixels where
    ``segments == z`` with the mean colour of that superpixel (``hide_color=None``)."""
    img = x[0].detach().cpu().double().numpy()
    fudged = np.empty_like(img)
    for s in np.unique(segments):
        m = segments == s
        fudged[:, m] = img[:, m].mean(1, keepdims=True)
    seg = torch.as_tensor(segments, dtype=torch.long)
    off = torch.zeros(data.shape[0], int(max(segments.max(), data.shape[1] - 1)) + 1, dtype=torch.bool)
    off[:, : data.shape[1]] = torch.as_tensor(data == 0)
    mask = off[:, seg].unsqueeze(1)  # n x 1 x H x W: the pixel's superpixel is switched off
    out = torch.where(mask, torch.as_tensor(fudged, dtype=torch.float32), x[0].detach().cpu().float())
    return out.to(x.device)


def homework_fit(data: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
    """``lime``'s local model: cosine distances of the choices to the first row, kernel ``sqrt(exp(-d² / 0.25²))``,
    features ordered by a ridge (alpha 0.01) fit, then a ridge (alpha 1) fit on them; ``[(feature, weight)]`` by
    decreasing |weight|, as ``explanation.local_exp[label]``."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import pairwise_distances

    d = pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
    w = np.sqrt(np.exp(-(d ** 2) / KERNEL_WIDTH ** 2))
    coef = Ridge(alpha=0.01, fit_intercept=True).fit(data, scores, sample_weight=w).coef_
    used = np.array([f for f, _ in sorted(enumerate(coef * data[0]), key=lambda t: abs(t[1]), reverse=True)])
    model = Ridge(alpha=1, fit_intercept=True).fit(data[:, used], scores, sample_weight=w)
    return sorted(zip(used.tolist(), model.coef_.tolist()), key=lambda t: abs(t[1]), reverse=True)


def homework_shown(weights: list[tuple[int, float]], features: int = 11, min_weight: float = 0.05) -> dict[int, float]:
    """The features ``get_image_and_mask(positive_only=False, num_features=11, min_weight=0.05)`` colours: of the
    first ``features`` by |weight|, those with |weight| ≥ ``min_weight`` (green when positive, red when negative)."""
    return {f: w for f, w in weights[:features] if abs(w) >= min_weight}


def homework_picture(image_chw: np.ndarray, segments: np.ndarray, shown: dict[int, float]) -> np.ndarray:
    """The homework's LIME picture (HxWx3 float): each shown superpixel with its green (for the class) or red
    (against it) channel set to the image's maximum."""
    img = np.transpose(np.asarray(image_chw, dtype=np.float64), (1, 2, 0))
    out = img.copy()
    for f, w in shown.items():
        out[segments == f, 0 if w < 0 else 1] = img.max()
    return out


@register
class HomeworkLime(Method):
    """LIME exactly as the homework runs it: the class's logit (the homework's ``predict`` returns logits) on 1000
    images with superpixels replaced by their mean colour, the ``lime`` package's sampling, kernel and ridge fits,
    and ``np.random.seed(16)``'s stream (``seed``: the homework's first image). The map: the weights of the 11
    superpixels the homework colours, 0 elsewhere; ``a.segments`` holds the superpixels."""

    name = "lime_homework"
    label = "LIME (as in the homework)"
    short = "LIME (homework)"
    general = False
    slow = True
    unit = "sample"
    order = 140
    options = (
        Option("samples", "int", 1000, "samples", min=2, slider=(100, 1000, 100), help="how many perturbed images"),
        Option("features", "int", 11, "features shown", min=1, slider=(1, 50, 1),
               help="how many superpixels (by |weight|) are coloured"),
        Option("min_weight", "float", 0.05, min=0.0, control=False, help="smaller weights are not coloured"),
        Option("batch_size", "int", 50, min=1, control=False, help="most images per forward"),
        Option("seed", "int", 16, control=False, help="np.random.seed of the homework"),
    )

    def legend(self, a):
        k = len(np.unique(a.segments)) if a.segments is not None else 200
        return (f"weights of lime's linear model over {k} SLIC superpixels; the {a.options['features']} strongest "
                "shown (red in the homework's picture: against the class, green: for it)")

    def reduce(self, raw):
        return np.asarray(raw, dtype=np.float32)[0]  # the superpixel's weight (every channel holds it)

    def total(self, o, x):
        return o["samples"]

    def steps(self, probe, fn, x, target, o):
        seg = homework_segments(x[0].detach().cpu().numpy())
        data = homework_samples(seg, o["samples"], o["seed"])
        k = data.shape[1]
        scores = []
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(o["samples"]):
            with pace.timed(j - i), torch.no_grad():
                scores.append(fn(homework_images(x, seg, data[i:j]))[:, target].double().cpu().numpy())
            if j < min(o["samples"], k):  # fewer samples than superpixels: nothing to fit yet
                yield Partial(j, None, {"note": f"a first map at {k} samples, one per superpixel"})
                continue
            shown = homework_shown(homework_fit(data[:j], np.concatenate(scores)), o["features"], o["min_weight"])
            m = np.zeros(seg.shape, np.float32)
            for f, w in shown.items():
                m[seg == f] = w
            yield Partial(j, torch.as_tensor(m, device=x.device)[None, None].expand(1, x.shape[1], *seg.shape),
                          {"segments": seg})
