"""LIME (Ribeiro et al. 2016) on superpixels, refitted as samples accumulate."""
import numpy as np
import torch

from ..base import Method, Option, Pace, Partial, register
from ..common import BASELINE_LABELS, make_baseline


def superpixels(image_chw: np.ndarray, segments: int = 50, method: str = "slic") -> np.ndarray:
    """HxW integer labels 0..K-1 of superpixels (scikit-image SLIC or quickshift)."""
    from skimage.segmentation import quickshift, slic

    img = np.ascontiguousarray(np.transpose(image_chw, (1, 2, 0)).astype(np.float64))
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if method == "slic":
        lab = slic(img, n_segments=int(segments), compactness=10, start_label=0)
    elif method == "quickshift":
        lab = quickshift(img, kernel_size=4, max_dist=200 / max(1, int(segments)) * 5, ratio=0.5)
    else:
        raise ValueError(f"segmentation is 'slic' or 'quickshift', not {method!r}.")
    _, lab = np.unique(lab, return_inverse=True)
    return lab.reshape(img.shape[:2])


def lime_choices(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``n x k`` 0/1: which of ``k`` superpixels each of ``n`` samples keeps (Bernoulli 0.5, Captum's default)."""
    return torch.bernoulli(torch.full((n, k), 0.5), generator=generator)


def lime_images(x: torch.Tensor, seg: np.ndarray, baseline: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The images for choices ``z`` (``n x K``): each superpixel of ``seg`` kept from ``x`` or taken from ``baseline``."""
    keep = z.to(x.device)[:, torch.as_tensor(seg, device=x.device)].unsqueeze(1)  # n x 1 x H x W
    return keep * x + (1 - keep) * baseline


def lime_samples(x: torch.Tensor, seg: np.ndarray, baseline: torch.Tensor, n: int, generator: torch.Generator):
    """``n`` LIME perturbations of ``x`` (1xCxHxW): (``n x K`` 0/1 choices, ``n x C x H x W`` images)."""
    z = lime_choices(n, int(seg.max()) + 1, generator)
    return z, lime_images(x, seg, baseline, z)


def lime_weights(x: torch.Tensor, images: torch.Tensor, kernel_width: float = 0.25) -> torch.Tensor:
    """Captum's exponential cosine kernel: ``exp(-d² / (2 w²))`` with ``d = 1 - cos(x, image)`` (flattened)."""
    d = 1 - torch.nn.functional.cosine_similarity(images.flatten(1).float(), x.flatten(1).float(), dim=1)
    return torch.exp(-(d ** 2) / (2 * kernel_width ** 2))


def lime_fit(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Weighted ridge regression of the scores on the choices (scikit-learn's Ridge, as Captum's SkLearnRidge)."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(z, y, sample_weight=w).coef_.astype(np.float32)


@register
class Lime(Method):
    """As Captum's ``Lime`` computes it (Bernoulli choices, cosine exponential kernel of width 0.25, ridge alpha 1),
    with the choices drawn from its own seeded generator (Captum draws them, and a DataLoader seed, from the global
    one: the user's random stream). Partial maps start once there are as many samples as superpixels."""

    name = "lime"
    label = "LIME (superpixels)"
    short = "LIME"
    slow = True
    unit = "sample"
    order = 70
    options = (
        Option("samples", "int", 200, "samples", min=1, slider=(50, 1000, 50),
               help="how many images with superpixels switched off are scored"),
        Option("segments", "int", 50, "superpixels", min=2, slider=(10, 200, 10), help="about how many superpixels"),
        Option("segmentation", "choice", "slic", "segmentation", choices=(("slic", "SLIC"), ("quickshift", "quickshift"))),
        Option("baseline", "choice", "mean", "fill", choices=BASELINE_LABELS, control=False,
               help="what replaces a switched-off superpixel"),
        Option("batch_size", "int", 32, min=1, control=False, help="most images per forward"),
        Option("seed", "int", 0, control=False),
    )

    def legend(self, a):
        k = int(a.segments.max()) + 1 if a.segments is not None else a.options["segments"]
        return f"weights of a linear model over {k} superpixels switched on/off"

    def total(self, o, x):
        return o["samples"]

    def steps(self, probe, fn, x, target, o):
        seg = superpixels(x[0].detach().cpu().numpy(), o["segments"], o["segmentation"])
        base = make_baseline(probe, x, o["baseline"])
        n = o["samples"]
        z = lime_choices(n, int(seg.max()) + 1, torch.Generator().manual_seed(o["seed"]))  # all drawn first
        ys, ws = [], []
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(n):
            with pace.timed(j - i), torch.no_grad():
                imgs = lime_images(x, seg, base, z[i:j])
                ys.append(fn(imgs)[:, target].float().cpu().numpy())
                ws.append(lime_weights(x, imgs).cpu().numpy())
            if j < min(n, z.shape[1]):  # fewer samples than superpixels: nothing to fit yet
                yield Partial(j, None, {"note": f"a first map at {z.shape[1]} samples, one per superpixel"})
                continue
            coef = lime_fit(z[:j].numpy(), np.concatenate(ys), np.concatenate(ws))
            attr = torch.as_tensor(coef[seg], device=x.device)[None, None].expand(1, x.shape[1], *seg.shape)
            yield Partial(j, attr, {"segments": seg})
