"""Turning whatever the user holds into image tensors, and the bundled sample photographs.

Every image enters cnnwidgets through :func:`to_tensor`, which returns a float ``3xHxW`` (or
``1xHxW``) tensor in [0, 1]. Model-specific resizing and normalisation live in :class:`Preprocess`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EXPECTED = (
    "an image: a file path, a PIL image, a numpy array HxW or HxWxC (uint8, uint16, or float in [0, 1]), "
    "a torch tensor HxW, CxHxW or NxCxHxW, or a list of these"
)

_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit PNGs (and 32-bit integer TIFFs) in PIL


def _pil_to_tensor(img: Image.Image, channels: int, what: str = "The PIL image") -> torch.Tensor:
    if img.mode in _INT_MODES or img.mode == "F":
        return _fix_channels(_pil_wide_to_tensor(img, what), channels, what)
    mode = "L" if channels == 1 else "RGB"
    if img.mode in ("RGBA", "LA", "P") and mode == "RGB":
        # composite transparent images on white, like a browser shows them
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    img = img.convert(mode)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _pil_wide_to_tensor(img: Image.Image, what: str) -> torch.Tensor:
    """A 16-bit ("I;16", "I") or float ("F") grayscale PIL image -> ``1xHxW`` with its real range.

    PIL's ``convert("L")`` would clip these to 0..255 (a 16-bit image saturates to white)."""
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float32)
        t = torch.from_numpy(a.copy())[None]
        _check_finite(t, f"{what} (a float image, PIL mode 'F')")
        lo, hi = (float(t.min()), float(t.max())) if t.numel() else (0.0, 0.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"{what} is a float image (PIL mode 'F') with values in [{lo:.4g}, {hi:.4g}]: expected [0, 1]. "
                "Scale it first, e.g. a = np.asarray(Image.open(path), np.float32); a = (a - a.min()) / (a.max() - a.min())."
            )
        return t.clamp_(0, 1)
    a = np.asarray(img).astype(np.float32)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(
            f"{what} is an integer image (PIL mode {img.mode!r}) with values in [{a.min():.0f}, {a.max():.0f}]: "
            "expected 16-bit values 0..65535. Scale it to [0, 1] first, e.g. a = np.asarray(img) / np.asarray(img).max()."
        )
    return torch.from_numpy(a / 65535.0)[None]


def _fix_channels(t: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    c = t.shape[0]
    if c == channels:
        return t
    if c == 4:  # RGBA: drop alpha
        t, c = t[:3], 3
    if c == channels:
        return t
    if c == 1 and channels == 3:
        return t.expand(3, -1, -1).clone()
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=t.dtype, device=t.device)
        return (t * w[:, None, None]).sum(0, keepdim=True)
    raise ValueError(f"{what} has {c} colour channels; expected 1 (gray), 3 (RGB) or 4 (RGBA).")


def to_tensor(image, channels: int = 3) -> torch.Tensor:
    """One image as a float tensor ``channels x H x W`` in [0, 1].

    Accepts a path, a PIL image (16-bit and float images keep their range: value / 65535, floats in
    [0, 1]), a numpy ``HxW`` or ``HxWxC`` array (uint8, uint16, or float in [0, 1]) or a tensor
    ``HxW`` or ``CxHxW``. A 2-D array is a grayscale image. Grayscale and RGBA are converted to
    ``channels``. NaN or infinite values, and complex numbers, are refused with a clear error.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Image file not found: {str(path)!r}. Check the path (cwd is {os.getcwd()!r}).")
        try:
            with Image.open(path) as img:
                img.load()
                return _pil_to_tensor(img, channels, repr(str(path)))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{str(path)!r} is not an image file PIL can read (PNG, JPEG, ...): {e}") from None
    if isinstance(image, Image.Image):
        t = _pil_to_tensor(image, channels)
    elif isinstance(image, np.ndarray):
        a = image
        if np.iscomplexobj(a):
            raise TypeError(f"Got a complex array (dtype {a.dtype}): an image has real values. "
                            "Pass np.abs(a) (the magnitude) or a.real.")
        if a.ndim == 2:  # grayscale HxW
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise ValueError(f"Got an array of shape {a.shape}: expected HxW (gray) or HxWxC with C = 1, 3 or 4.")
        if a.dtype == np.uint8:
            # np.require copies read-only arrays (np.asarray(pil_image)), which torch would warn about
            t = torch.from_numpy(np.require(a, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)
        elif a.dtype == np.uint16:
            t = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).div_(65535.0)
        elif a.dtype == bool:
            t = torch.from_numpy(np.require(a, requirements=["C", "W"])).permute(2, 0, 1).float()
        elif np.issubdtype(a.dtype, np.floating):
            t = torch.from_numpy(np.require(a, np.float32, ["C", "W"])).permute(2, 0, 1)
            _check_unit_range(t, "float array")
        else:
            raise ValueError(f"Got an array of dtype {a.dtype}: expected uint8 (0-255), uint16 (0-65535) or float in [0, 1].")
    elif isinstance(image, torch.Tensor):
        t = image.detach()
        if t.is_complex():
            raise TypeError(f"Got a complex tensor ({t.dtype}): an image has real values. "
                            "Pass t.abs() (the magnitude) or t.real.")
        if t.ndim == 2:  # grayscale HxW
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"Got a {t.ndim}-D tensor of shape {tuple(t.shape)}: expected CxHxW (or NxCxHxW for a batch).")
        if t.shape[0] not in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
            raise ValueError(f"Got a tensor of shape {tuple(t.shape)}: tensors are CxHxW; use t.permute(2, 0, 1).")
        if t.dtype == torch.uint8:
            t = t.float().div(255.0)
        else:
            t = t.float()
            _check_unit_range(t, "tensor")
        t = t.cpu()
    else:
        raise TypeError(f"Got {type(image).__name__}: expected {EXPECTED}.")
    t = _fix_channels(t, channels, "The image")
    if min(t.shape[-2:]) < 2:
        raise ValueError(f"The image is {t.shape[-2]}x{t.shape[-1]} pixels: too small to show a network (at least 2x2, ideally ~224x224).")
    return t


def _check_finite(t: torch.Tensor, what: str) -> None:
    """A clear error for NaN or infinite pixels (they would poison every activation)."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        nan = int(torch.isnan(t).sum())
        if nan:
            raise ValueError(f"{what} has {nan} NaN values (of {t.numel()}): an image needs finite numbers in [0, 1]. "
                             "Replace them first, e.g. np.nan_to_num(a) or torch.nan_to_num(t).")
        inf = int(torch.isinf(t).sum())
        raise ValueError(f"{what} has {inf} infinite values (of {t.numel()}): an image needs finite numbers in [0, 1]. "
                         "Replace or clip them first, e.g. torch.nan_to_num(t, posinf=1.0, neginf=0.0).")


def _check_unit_range(t: torch.Tensor, what: str) -> None:
    _check_finite(t, f"The {what}")
    if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
        raise ValueError(
            f"The {what} has values in [{float(t.min()):.3g}, {float(t.max()):.3g}]: expected a raw image in [0, 1]. "
            "If it is already normalised for the model, pass preprocess=False."
        )


def to_images(images, channels: int = 3) -> list[torch.Tensor]:
    """A list of ``CxHxW`` tensors from one image, a list of images, or an ``NxCxHxW`` tensor / ``NxHxWxC`` array."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [to_tensor(t, channels) for t in images]
    if isinstance(images, torch.Tensor) and images.ndim not in (2, 3):
        raise ValueError(f"Got a {images.ndim}-D tensor of shape {tuple(images.shape)}: expected HxW, CxHxW or NxCxHxW.")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [to_tensor(a, channels) for a in images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"Got an empty list: expected {EXPECTED}.")
        return [to_tensor(i, channels) for i in images]
    return [to_tensor(images, channels)]


@dataclass(frozen=True)
class Preprocess:
    """Resize (shorter side), centre crop, normalise: what a model expects of an image in [0, 1]."""

    resize: int | None = 256
    crop: tuple[int, int] | None = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    interpolation: str = "bilinear"

    def geometry(self, img: torch.Tensor) -> torch.Tensor:
        """Resize and crop only (still in [0, 1]); what panels show beside the maps."""
        interp = TF.InterpolationMode(self.interpolation)
        if self.resize is not None:
            img = TF.resize(img, [self.resize], interpolation=interp, antialias=True)
        if self.crop is not None:
            img = TF.center_crop(img, list(self.crop))
        return img.clamp_(0, 1)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        return TF.normalize(img, list(self.mean), list(self.std))

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return x * std + mean

    def __call__(self, images) -> torch.Tensor:
        """Any image(s) -> normalised batch ``NxCxHxW``. Sizes must agree after resize/crop."""
        ts = [self.normalize(self.geometry(t)) for t in to_images(images, self.channels)]
        shapes = {tuple(t.shape) for t in ts}
        if len(shapes) > 1:
            raise ValueError(
                f"Images have different sizes after preprocessing: {sorted(shapes)}. "
                "Give the Probe a Preprocess with a crop size, or resize the images to one size."
            )
        return torch.stack(ts)

    @property
    def input_size(self) -> tuple[int, int]:
        if self.crop is not None:
            return tuple(self.crop)
        if self.resize is not None:
            return (self.resize, self.resize)
        return (224, 224)


# --- sample photographs -----------------------------------------------------------------------

_SAMPLES = {
    # name: (skimage.data function, description)
    "chelsea": ("chelsea", "a tabby cat"),
    "coffee": ("coffee", "a cup of espresso"),
    "astronaut": ("astronaut", "astronaut Eileen Collins"),
    "rocket": ("rocket", "a rocket on its launch pad"),
    "motorcycle": ("stereo_motorcycle", "a motorcycle"),
    "immunohistochemistry": ("immunohistochemistry", "stained tissue under a microscope"),
    "hubble": ("hubble_deep_field", "Hubble deep field galaxies"),
    "retina": ("retina", "a human retina"),
    "camera": ("camera", "a cameraman (grayscale)"),
    "coins": ("coins", "Greek coins (grayscale)"),
    "moon": ("moon", "the moon's surface (grayscale)"),
    "brick": ("brick", "a brick wall texture (grayscale)"),
    "grass": ("grass", "a grass texture (grayscale)"),
    "gravel": ("gravel", "a gravel texture (grayscale)"),
    "colorwheel": ("colorwheel", "a colour wheel"),
}


def sample_names() -> list[str]:
    """Names accepted by :func:`sample_image`."""
    return list(_SAMPLES)


def sample_image(name: str = "chelsea") -> Image.Image:
    """One photograph bundled with scikit-image, as an RGB PIL image (works offline)."""
    if name not in _SAMPLES:
        import difflib

        close = difflib.get_close_matches(name, _SAMPLES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown sample image {name!r}.{hint} Available: {', '.join(_SAMPLES)}.")
    from skimage import data

    arr = getattr(data, _SAMPLES[name][0])()
    if isinstance(arr, tuple):  # stereo pairs
        arr = arr[0]
    img = Image.fromarray(np.asarray(arr))
    return img.convert("RGB")


def sample_images(names: Sequence[str] | None = None) -> dict[str, Image.Image]:
    """The bundled photographs by name: ``{"chelsea": <PIL image>, ...}``.

    ``names=None`` gives the colour photographs (the grayscale textures are available by name).
    """
    if names is None:
        names = ["chelsea", "coffee", "astronaut", "rocket", "motorcycle", "immunohistochemistry", "hubble", "retina"]
    return {n: sample_image(n) for n in names}


def sample_batch(n: int = 16, size: int = 224, names: Iterable[str] | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` images ``nx3xsize x size`` in [0, 1]: random crops and flips of the sample photographs.

    For analyses that need many images (CKA, embeddings, top images) when no dataset is at hand.
    Deterministic for a given ``seed``. :func:`sample_dataset` also gives each image's source name.
    """
    return sample_dataset(n, size, names, seed)[0]


def sample_dataset(n: int = 16, size: int = 224, names: Iterable[str] | None = None, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Like :func:`sample_batch`, with a label per image: the name of the photograph it was cut from."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    photos = sample_images(names)
    names = list(photos)
    labels = [names[i % len(names)] for i in range(n)]
    imgs = [to_tensor(im) for im in photos.values()]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        h, w = img.shape[-2:]
        side = min(h, w)
        scale = 0.5 + 0.5 * float(torch.rand((), generator=g))
        s = max(8, int(side * scale))
        top = int(torch.randint(0, h - s + 1, (), generator=g))
        left = int(torch.randint(0, w - s + 1, (), generator=g))
        crop = img[:, top : top + s, left : left + s]
        crop = TF.resize(crop, [size, size], antialias=True)
        if float(torch.rand((), generator=g)) < 0.5:
            crop = crop.flip(-1)
        out.append(crop.clamp(0, 1))
    return torch.stack(out), labels


def noise_image(size: int = 224, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Uniform noise ``CxHxW`` in [0, 1] (seed 002's "what does each filter do" input)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(channels, size, size, generator=g)
