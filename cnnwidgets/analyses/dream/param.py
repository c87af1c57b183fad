"""How a dreamed image is parameterised: plain pixels, or a Fourier spectrum with decorrelated colour.

An :class:`ImageParam` holds the tensors the optimiser updates (``.params``) and turns them into
the image batch ``N x C x H x W`` in [0, 1] (``param()``). Initial values come from a
``torch.Generator`` (on the CPU, then moved), so a seed gives the same image on every device.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

#: Square root of ImageNet's colour correlation (from Lucid): decorrelated space -> RGB
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()


class ImageParam:
    """``params``: leaf tensors to optimise; ``image_fn(*params)`` -> ``N x C x H x W`` in [0, 1]."""

    def __init__(self, params: list[torch.Tensor], image_fn: Callable[[], torch.Tensor], kind: str):
        self.params = params
        self.image_fn = image_fn
        self.kind = kind

    def __call__(self) -> torch.Tensor:
        return self.image_fn(*self.params)

    def snapshot(self):
        """A function giving the image of the parameters as they are now (a cheap copy of them; the
        image itself is computed only when the function is called, without autograd)."""
        saved = [p.detach().clone() for p in self.params]

        def image() -> torch.Tensor:
            with torch.no_grad():
                return self.image_fn(*saved)
        return image

    @property
    def finite(self) -> bool:
        """Whether every parameter is finite (one sum each: a NaN or inf anywhere makes it non-finite;
        so do values so large that their sum overflows, which no usable image has)."""
        return all(math.isfinite(float(p.detach().sum())) for p in self.params)


def _randn(shape, sd, generator, device):
    return (torch.randn(*shape, generator=generator) * sd).to(device).requires_grad_(True)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Rescale each image of the batch to [0, 1] by its own min and max (seed 001's step)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(1).values.reshape(-1, 1, 1, 1)
    hi = flat.max(1).values.reshape(-1, 1, 1, 1)
    return (x - lo) / (hi - lo)


def pixels(shape, *, init: torch.Tensor | None = None, sd: float | None = None, generator: torch.Generator | None = None,
           device="cpu", rescale: str = "minmax") -> ImageParam:
    """Plain pixels. ``init``: a starting batch in [0, 1]; else uniform noise (seed 001) or ``randn * sd``.

    ``rescale="minmax"`` maps each image to [0, 1] by its min and max (seed 001, the homework);
    ``"sigmoid"`` squashes; ``"clamp"`` clips; ``"none"`` leaves the pixels as they are, unbounded (the
    homework's filter explanation).
    """
    if init is not None:
        data = init.detach().to(device, torch.float32).clone().requires_grad_(True)
    elif sd is None:
        data = torch.rand(*shape, generator=generator).to(device).requires_grad_(True)
    else:
        data = _randn(shape, sd, generator, device)
    fns = {"minmax": minmax, "sigmoid": torch.sigmoid, "clamp": lambda t: t.clamp(0, 1), "none": lambda t: t}
    if rescale not in fns:
        raise ValueError(f"rescale must be one of {sorted(fns)}, got {rescale!r}.")
    f = fns[rescale]
    return ImageParam([data], f, f"pixels ({rescale})")


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
    """Spatial frequencies of a 2-D real FFT of an ``h x w`` image (one extra column for odd ``w``)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + (2 if w % 2 else 1)]
    return np.sqrt(fx * fx + fy * fy)


def fft(shape, *, sd: float = 0.01, decay_power: float = 1.0, generator: torch.Generator | None = None, device="cpu"):
    """A Fourier-space parameterisation (Lucid/Lucent): spectrum scaled by 1/frequency, so every
    frequency learns at the same rate and low frequencies dominate. Returns ``(params, fn)``; ``fn(spectrum)``
    is the (unbounded) spatial image ``N x C x H x W``."""
    n, c, h, w = shape
    freqs = rfft2d_freqs(h, w)
    spectrum = _randn((n, c) + freqs.shape + (2,), sd, generator, device)
    scale = torch.tensor(1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power / 4.0, dtype=torch.float32)  # 4: Lucid's constant
    # the full (real, imaginary) shape: a scale broadcast along that last axis of 2 made the multiply 7x slower
    scale = scale[None, None, ..., None].expand(1, 1, *freqs.shape, 2).contiguous().to(device)

    def image(spectrum):
        return torch.fft.irfftn(torch.view_as_complex(scale * spectrum), s=(h, w), norm="ortho")  # n x c x h x w

    return [spectrum], image


def decorrelate(t: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """Map 3 decorrelated colour channels to RGB (ImageNet's colour correlation ``m``); others unchanged."""
    if t.shape[1] != 3:
        return t
    m = COLOR_CORRELATION.to(t.device, t.dtype) if m is None else m
    return torch.matmul(m, t.reshape(t.shape[0], 3, -1)).reshape(t.shape)  # one small GEMM, no permuted copies


def image(h: int, w: int | None = None, *, batch: int = 1, channels: int = 3, fft_param: bool = True,
          decorrelated: bool = True, sd: float = 0.01, generator: torch.Generator | None = None, device="cpu") -> ImageParam:
    """Lucent's ``param.image``: FFT (or pixels) + decorrelated colour + sigmoid -> [0, 1]."""
    w = w or h
    shape = (batch, channels, h, w)
    if fft_param:
        params, fn = fft(shape, sd=sd, generator=generator, device=device)
    else:
        p = _randn(shape, sd, generator, device)
        params, fn = [p], (lambda t: t)
    m = COLOR_CORRELATION.to(device)
    colour = (lambda t: decorrelate(t, m)) if decorrelated and channels == 3 else (lambda t: t)
    kind = ("fft" if fft_param else "pixels") + (" + decorrelated colour" if decorrelated and channels == 3 else "")
    return ImageParam(params, lambda t: torch.sigmoid(colour(fn(t))), kind)
