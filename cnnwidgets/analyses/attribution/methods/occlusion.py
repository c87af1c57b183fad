"""Occlusion (Zeiler & Fergus 2014): the score drop when a square of the image is covered, the window
positions taken coarse to fine so the map fills in evenly."""
import math

import torch

from ..base import Method, Option, Pace, Partial, register, spread2d
from ..common import BASELINE_LABELS, make_baseline


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Top (or left) edges of the window along one side, as Captum's ``Occlusion`` slides it: every ``stride``
    pixels, the last one overlapping the edge when the stride does not divide the rest."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


@register
class Occlusion(Method):
    name = "occlusion"
    label = "Occlusion"
    slow = True
    unit = "window position"
    order = 60
    options = (
        Option("window", "int", 32, "window px", min=1, slider=(8, 112, 8), help="the side of the covering square"),
        Option("stride", "int", 16, "stride px", min=1, slider=(4, 112, 4),
               help="how far the square moves each time; at most the window"),
        Option("baseline", "choice", "mean", "fill", choices=BASELINE_LABELS, help="what covers the square"),
        Option("batch_size", "int", 32, min=1, control=False, help="most covered images per forward"),
    )

    def legend(self, a):
        return f"score drop when a {a.options['window']} px square is covered (positive: the square helped the class)"

    def check(self, o, x):
        h, w = x.shape[-2:]
        if o["window"] > min(h, w):
            raise ValueError(f"Occlusion: the window ({o['window']} px) is larger than the image ({h}×{w}); "
                             f"use a window of at most {min(h, w)} px.")
        if o["stride"] > o["window"]:
            raise ValueError(f"Occlusion: the stride ({o['stride']} px) is larger than the window ({o['window']} px), "
                             "which would leave pixels never covered; use a stride of at most the window.")

    def total(self, o, x):
        h, w = x.shape[-2:]
        return len(window_positions(h, o["window"], o["stride"])) * len(window_positions(w, o["window"], o["stride"]))

    def steps(self, probe, fn, x, target, o):
        win = o["window"]
        rows = window_positions(x.shape[-2], win, o["stride"])
        cols = window_positions(x.shape[-1], win, o["stride"])
        order = [(rows[r], cols[c]) for r, c in spread2d(len(rows), len(cols))]
        base = make_baseline(probe, x, o["baseline"])
        acc = torch.zeros_like(x)
        count = torch.zeros_like(x[:, :1])
        with torch.no_grad():
            score = fn(x)[0, target]
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(len(order)):
            with pace.timed(j - i), torch.no_grad():
                imgs = x.repeat(j - i, 1, 1, 1)
                for k, (t, l) in enumerate(order[i:j]):
                    imgs[k, :, t:t + win, l:l + win] = base[0, :, t:t + win, l:l + win]
                drop = score - fn(imgs)[:, target]
                for d, (t, l) in zip(drop, order[i:j]):
                    acc[..., t:t + win, l:l + win] += d
                    count[..., t:t + win, l:l + win] += 1
            yield Partial(j, acc / count.clamp(min=1))  # pixels no window has covered yet: 0
