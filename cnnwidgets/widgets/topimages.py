"""TopImages: the images of a whole dataset that excite a channel most, with the crop its strongest unit sees.

Reads a :mod:`cnnwidgets.index` (one pass over the set, made beforehand); the receptive fields come from
:mod:`cnnwidgets.analyses.receptive_field` through the Probe. With ``dream=True`` (the Explorer's tab) the channel's
dream is drawn beside its dataset examples, as OpenAI Microscope shows them.
"""
from __future__ import annotations

import html
import os
from collections import OrderedDict

import ipywidgets as W
import numpy as np
import torch
import traitlets as T

from .. import render
from ..analyses import receptive_field as RF
from ..images import to_images
from ..imagesets import image_set, known_length
from ._base import Message, Panel, RunControls, image_widget, set_image

SIDE = 120  #: pixels of each picture in a card (the whole image, and the crop beside it)
BOX = np.array([255, 196, 0], np.uint8)  #: the receptive field's frame
MARK = np.array([230, 0, 60], np.uint8)  #: the peak's cross
BY_OPTIONS = [("strongest spot (max)", "max"), ("whole image (mean)", "mean")]


def _resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    small = rgb.shape[0] < h and rgb.shape[1] < w
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.NEAREST if small else Image.BILINEAR))


def _frame(rgb: np.ndarray, box, colour=BOX, width: int = 2) -> None:
    t, l, b, r = (int(round(v)) for v in box)
    H, W_ = rgb.shape[:2]
    t, l = max(0, min(t, H - 1)), max(0, min(l, W_ - 1))
    b, r = max(t + 1, min(b, H)), max(l + 1, min(r, W_))
    for i in range(width):  # drawn inside the box, so it shows at the image's edges too
        rgb[min(t + i, H - 1), l:r] = colour
        rgb[max(b - 1 - i, 0), l:r] = colour
        rgb[t:b, min(l + i, W_ - 1)] = colour
        rgb[t:b, max(r - 1 - i, 0)] = colour


def _cross(rgb: np.ndarray, y: float, x: float, colour=MARK, arm: int = 5) -> None:
    H, W_ = rgb.shape[:2]
    y, x = int(min(max(round(y), 0), H - 1)), int(min(max(round(x), 0), W_ - 1))
    rgb[max(0, y - arm):y + arm + 1, max(0, x - 1):x + 1] = colour
    rgb[max(0, y - 1):y + 1, max(0, x - arm):x + arm + 1] = colour


class _ErrorsOnly(Message):
    """A message line for errors and warnings; the end-of-run line is left to the progress label beside it."""

    def info(self, text: str) -> None:
        self.clear()


class TopImages(Panel):
    """For one channel of a layer: the top images of a whole dataset (from a :mod:`cnnwidgets.index`), each with
    the part of the image its strongest unit sees (the receptive field) framed, and that crop enlarged beside it.

    >>> ix = cw.index.build(probe, "photos/", k=16)
    >>> top = cw.TopImages(ix, "_blocks.10", images="photos/", probe=probe)
    >>> traitlets.link((fm, "channel"), (top, "channel"))      # a channel picked in FeatureMaps shows its images

    ``images``: the set the index was made from (not needed for a folder or a list of files: the index keeps their
    paths); ``probe``: the model, for the receptive fields (without it the peak's place in the map is framed).
    Traits: ``layer``, ``channel``, ``by`` (``"max"``: the strongest spot; ``"mean"``: the whole image).
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    by = T.Unicode("max").tag(sync=False)

    def __init__(self, index, layer=None, images=None, channel: int = 0, *, probe=None, by: str = "max",
                 dream: bool = False):
        from .. import index as _index_mod

        if not isinstance(index, _index_mod.Index):
            raise TypeError(f"TopImages shows an index made by cw.index.build(probe, images), got "
                            f"{type(index).__name__}. Build one first: ix = cw.index.build(probe, images).")
        if by not in ("max", "mean"):
            raise ValueError(f"by must be 'max' or 'mean', got {by!r}.")
        self.index, self.probe = index, probe
        self.images = None if images is None else image_set(images)
        self.hits: list = []  #: the shown channel's hits (index.top), best first
        self._rf: dict = {}
        self._pictures: OrderedDict[int | str, torch.Tensor] = OrderedDict()
        self._positions = None
        self.message = Message()
        notes = self._check_match()

        names = index.layers
        self.layer_picker = W.Dropdown(options=[(f"{n} · {'×'.join(map(str, index.shape(n)))}", n) for n in names],
                                       description="layer", layout=W.Layout(width="420px"))
        self.by_picker = W.ToggleButtons(options=BY_OPTIONS, value=by, description="rank by",
                                         style={"button_width": "170px"},
                                         tooltips=["each image's largest value of the channel",
                                                   "the channel's mean over the whole image"])
        self.prev_button = W.Button(description="previous", icon="arrow-left", layout=W.Layout(width="110px"))
        self.next_button = W.Button(description="next", icon="arrow-right", layout=W.Layout(width="90px"))
        self.slider = W.IntSlider(value=0, min=0, max=1, description="channel", continuous_update=False,
                                  layout=W.Layout(width="420px"))
        self.channel_caption = W.HTML()
        self.legend = W.HTML()
        self.cards = [self._card() for _ in range(index.k)]
        self.grid = W.Box([c for c, _, _ in self.cards], layout=W.Layout(display="flex", flex_flow="row wrap"))

        self.prev_button.on_click(lambda _: self.step(-1))
        self.next_button.on_click(lambda _: self.step(+1))
        self.slider.observe(lambda ch: setattr(self, "channel", int(ch["new"])), "value")
        self.layer_picker.observe(lambda ch: ch["new"] and setattr(self, "layer", ch["new"]), "value")
        self.by_picker.observe(lambda ch: setattr(self, "by", ch["new"]), "value")

        self._ready = False
        self.dream_box = None
        if dream:
            self._make_dream()
        s = index.meta["set"]
        title = (f"<b>Top images</b> — the images of <i>{html.escape(str(s['what']))}</i> ({index.num_images} "
                 f"indexed) that excite one channel of <code>{html.escape(index.model)}</code> most" + notes)
        body = self.grid if self.dream_box is None else W.HBox([self.dream_box, self.grid])
        super().__init__([W.HTML(title), self.layer_picker, W.HBox([self.prev_button, self.slider, self.next_button]),
                          self.by_picker, self.channel_caption, self.message, self.legend, body])
        for w, cls in ([(self, "cnnw-topimages"), (self.channel_caption, "cnnw-top-channel")] +
                       [(c[0], "cnnw-top-card") for c in self.cards] + [(c[1], "cnnw-top-img") for c in self.cards]):
            w.add_class(cls)
        if self.dream_box is not None:
            self.dream_image.add_class("cnnw-top-dream")
        self.by = by
        self.layer = index.layers[0] if layer is None else self._name(layer)
        self.channel = int(channel)
        self._ready = True
        self._show()

    # --- setup ---------------------------------------------------------------------------------
    def _name(self, layer) -> str:
        if isinstance(layer, int) and not isinstance(layer, bool):
            return self.index.layers[layer]
        return getattr(layer, "name", layer)

    def _check_match(self) -> str:
        """One line for what does not match: the probe's model or the image set against what was indexed."""
        ix, out = self.index, []
        if self.probe is not None:
            from ..index import model_key

            if tuple(self.probe.transform.input_size) != tuple(ix.input_size):
                out.append(f"the index was made at input size {ix.input_size}, the probe's is "
                           f"{tuple(self.probe.transform.input_size)}: the frames may be off")
            elif model_key(self.probe) != ix.model_key:
                out.append("the model's weights differ from those the index was made with (trained since?): "
                           "rebuild the index to see what the channels respond to now")
        n = ix.meta["set"]["length"]
        if self.images is not None and n is not None and known_length(self.images) not in (None, n):
            out.append(f"the index was made over {n} images, and these images are {len(self.images)}: "
                       "give the same set")
        if ix.meta["set"]["refs"] == "position" and self.images is None:
            out.append("give images= (the set that was indexed) to see the images")
        return "".join(f"<br><span style='color:#8a5a00'>{html.escape(t)}</span>" for t in out)

    def _card(self):
        img = image_widget(width=f"{2 * SIDE + 6}px")
        img.layout.display = "none"
        cap = W.HTML(layout=W.Layout(width=f"{2 * SIDE + 6}px"))
        box = W.VBox([img, cap], layout=W.Layout(margin="0 10px 10px 0", width=f"{2 * SIDE + 10}px"))
        return box, img, cap

    # --- traits --------------------------------------------------------------------------------
    @T.validate("channel")
    def _valid_channel(self, proposal):
        c = int(proposal["value"])
        if self.layer in self.index.layers:
            c = max(0, min(c, self.index.channels(self.layer) - 1))
        return max(0, c)

    @T.observe("layer")
    def _on_layer(self, change):
        name = change["new"]
        if name not in self.index.layers:
            self.message.warn(f"{name} is not in this index (it has {', '.join(self.index.layers)}): build the "
                              "index with that layer to see its top images.")
            for box, _, _ in self.cards:
                box.add_class("cnnw-stale")
            return
        self.message.clear()
        with self.slider.hold_trait_notifications():
            self.slider.max = max(0, self.index.channels(name) - 1)
        if self.layer_picker.value != name:
            self.layer_picker.value = name
        if self.channel > self.slider.max:
            self.channel = self.slider.max  # shows
        else:
            self._show()

    @T.observe("channel", "by")
    def _on_channel(self, change):
        if self.slider.value != self.channel:
            self.slider.value = self.channel
        if self.by_picker.value != self.by:
            self.by_picker.value = self.by
        self._show()

    def step(self, delta: int) -> None:
        """Show the next (``+1``) or previous (``-1``) channel."""
        if self.layer in self.index.layers:
            self.channel = (self.channel + delta) % self.index.channels(self.layer)

    # --- pictures ------------------------------------------------------------------------------
    def _position(self, ref):
        """The set position of a hit's ref (a path is looked up among the set's files), or None."""
        if not isinstance(ref, str):
            return int(ref)
        if self.images is None:
            return None
        if self._positions is None:
            items = getattr(self.images, "items", None) or []
            self._positions = {os.path.normpath(str(p)): i for i, p in enumerate(items) if isinstance(p, (str, os.PathLike))}
        return self._positions.get(os.path.normpath(ref))

    def picture(self, ref) -> torch.Tensor:
        """The image a hit refers to, as the model sees it (resized and cropped), ``C x H x W`` in [0, 1]."""
        if ref in self._pictures:
            self._pictures.move_to_end(ref)
            return self._pictures[ref]
        if isinstance(ref, str):
            src = ref
        elif self.images is not None:
            src = self.images.image(int(ref))
        else:
            raise ValueError("give images= (the set that was indexed) to see the images")
        if self.probe is not None:
            t = self.probe.display(src)[0]
        else:
            t = to_images(src)[0]
            t = torch.nn.functional.interpolate(t[None].float(), size=tuple(self.index.input_size), mode="bilinear",
                                                align_corners=False)[0].clamp(0, 1)
        self._pictures[ref] = t
        if len(self._pictures) > 4 * self.index.k:
            self._pictures.popitem(last=False)
        return t

    def field(self, layer: str):
        """The layer's receptive field (:mod:`~cnnwidgets.analyses.receptive_field`), or None without a probe."""
        if self.probe is None or not self.index.spatial(layer):
            return None
        if layer not in self._rf:
            self._rf[layer] = RF.receptive_field(self.probe, layer)
        return self._rf[layer]

    def box(self, hit):
        """``(top, left, bottom, right)`` of what the hit's peak unit sees, in input pixels, and its centre."""
        H, W_ = self.index.input_size
        if hit.y is None:
            return (0, 0, H, W_), (H / 2, W_ / 2)
        rf = self.field(self.layer)
        if rf is not None:
            return rf.box(hit.y, hit.x), RF.centre(rf, hit.y, hit.x)
        _, h, w = self.index.shape(self.layer)  # no probe: the peak's cell of the map, scaled to the image
        sy, sx = H / h, W_ / w
        return (hit.y * sy, hit.x * sx, (hit.y + 1) * sy, (hit.x + 1) * sx), ((hit.y + .5) * sy, (hit.x + .5) * sx)

    def card_rgb(self, hit) -> np.ndarray:
        """One card's picture: the whole image with the field framed and the peak crossed, and the crop enlarged."""
        img = render.image_rgb(self.picture(hit.ref))
        H, W_ = img.shape[:2]
        (t, l, b, r), (cy, cx) = self.box(hit)
        f = SIDE / max(H, W_)
        whole = _resize(img, max(1, round(H * f)), max(1, round(W_ * f))).copy()
        crop = img[int(t):max(int(t) + 1, int(round(b))), int(l):max(int(l) + 1, int(round(r)))]
        if hit.y is not None:
            _frame(whole, (t * f, l * f, b * f, r * f))
            _cross(whole, cy * f, cx * f)
        g = SIDE / max(crop.shape[:2])
        crop = _resize(crop, max(1, round(crop.shape[0] * g)), max(1, round(crop.shape[1] * g)))
        out = np.full((SIDE, 2 * SIDE + 6, 3), 255, np.uint8)
        out[:whole.shape[0], :whole.shape[1]] = whole
        out[:crop.shape[0], SIDE + 6:SIDE + 6 + crop.shape[1]] = crop
        return out

    def label(self, hit) -> str:
        """The class name of a hit's image, or "" when the set has no labels."""
        pos = self._position(hit.ref)
        if self.images is None or pos is None:
            return ""
        try:
            lab = self.images.label(pos)
        except Exception:  # a label that cannot be read back: the card shows without it
            return ""
        return "" if lab is None else self.images.class_name(lab)

    def caption(self, rank: int, hit) -> str:
        name = os.path.basename(hit.ref) if isinstance(hit.ref, str) else f"image {hit.ref}"
        label = self.label(hit)
        parts = [f"<b>#{rank}</b>", f"{hit.score:.3g}"] + ([f"<b>{html.escape(label)}</b>"] if label else [])
        return (f"<div style='line-height:1.3;font-size:12px' title='{html.escape(str(hit.ref))}'>{' · '.join(parts)}"
                f"<br><span style='color:#666'>{html.escape(name)}</span></div>")

    # --- drawing -------------------------------------------------------------------------------
    def _show(self) -> None:
        if not self.__dict__.get("_ready") or not self.layer or self.layer not in self.index.layers:
            return
        self.hits = self.index.top(self.layer, self.channel, by=self.by)
        self._describe()
        problem = None
        for i, (box, img, cap) in enumerate(self.cards):
            box.remove_class("cnnw-stale")
            if i >= len(self.hits):
                box.layout.display = "none"
                continue
            box.layout.display = None
            hit = self.hits[i]
            try:
                set_image(img, self.card_rgb(hit))
                img.layout.display = None
            except Exception as e:  # an image that cannot be read: its card says so, the others show
                img.layout.display = "none"
                problem = problem or e
            cap.value = self.caption(i + 1, hit)
        if problem is not None:
            self.message.warn(f"Some images could not be shown: {problem}")
        if self.dream_box is not None:
            self._dream_stale()

    def _describe(self) -> None:
        name, c = self.layer, self.channel
        C = self.index.channels(name)
        st = self.index.stats(name)
        what = ("its largest value in the image" if self.by == "max" else "its mean over the whole image")
        line = (f"channel <b>{c}</b> of {C} in layer <b>{html.escape(name)}</b> · score = {what} · over the set: mean "
                f"{st['mean'][c]:.3g}, largest {st['max'][c]:.3g}")
        if st["dead"][c]:
            line += " · <span style='color:#b00'>never above 0 on any image (a dead channel): its top images are arbitrary</span>"
        elif st["dead_fraction"][c] > 0:
            line += f" · never above 0 on {st['dead_fraction'][c]:.0%} of the images"
        self.channel_caption.value = line
        if not self.index.spatial(name):
            self.legend.value = ("<span style='color:#555'>This layer has no map (a vector): each unit sees the whole "
                                 "image.</span>")
            return
        rf = self.field(name)
        if rf is not None:
            how = {"arithmetic": "computed from the layers' kernels and strides",
                   "gradient": "measured from the gradient"}.get(rf.method, rf.method)
            what_box = f"what the strongest unit sees ({rf.size[0]}×{rf.size[1]} pixels, {how})"
        else:
            what_box = "where in the map the strongest unit is (give probe= to see what it sees)"
        self.legend.value = ("<span style='color:#555'>Left: the image; the <b style='color:#c98f00'>yellow frame</b> "
                             f"is {what_box}, the <b style='color:#e6003c'>red cross</b> its centre. Right: that part, "
                             "enlarged. Under each: rank · score · class.</span>")

    # --- the dream beside the examples (Microscope's view) ----------------------------------------------
    def _make_dream(self) -> None:
        if self.probe is None:
            raise ValueError("dream=True needs probe= (the model dreams the channel).")
        self.dream_steps = 96
        self.dream_image = image_widget(width=f"{2 * SIDE}px")
        self.dream_image.layout.display = "none"
        self.dream_caption = W.HTML("<span style='color:#666'>an image made, step by step, to excite this channel as "
                                    "much as possible: press Dream</span>")
        self.dream_message = _ErrorsOnly()  # the dream's own line, beside it: "done" is said once, by the progress
        self.dream_controls = RunControls(self._dream_job, self._dream_frame, message=self.dream_message, unit="step",
                                          pause=False, panel=self, stale=lambda: [self.dream_image])
        self.dream_controls.start_button.description = "Dream"
        self._dreamed = None
        self.dream_controls.progress.layout.width = "240px"
        self.dream_box = W.VBox([W.HTML("<b>The channel's dream</b>"), self.dream_controls, self.dream_message,
                                 self.dream_image, self.dream_caption], layout=W.Layout(width=f"{2 * SIDE + 20}px",
                                                                      min_width=f"{2 * SIDE + 20}px", margin="0 16px 0 0"))
        self.dream_controls.layout.flex_flow = "row wrap"

    def _dream_job(self):
        from ..analyses import dream as D

        self._dreaming = (self.layer, self.channel)
        return D.dream(self.probe, D.channel(self.layer, self.channel), steps=self.dream_steps)

    def _dream_frame(self, item, final) -> None:
        img = getattr(item, "image", None)
        if img is None:
            return
        set_image(self.dream_image, render.upscale(item.rgb(0), 2 * SIDE))
        self.dream_image.layout.display = None
        self.dream_image.remove_class("cnnw-stale")
        self._dreamed = self._dreaming
        layer, c = self._dreamed
        state = "" if final else f" (step {item.step} of {item.total})"
        self.dream_caption.value = f"the dream of channel {c} of layer {html.escape(layer)}{state}"

    def _dream_stale(self) -> None:
        if self._dreamed is not None and self._dreamed != (self.layer, self.channel):
            self.dream_image.add_class("cnnw-stale")
            self.dream_caption.value = (f"the dream of channel {self._dreamed[1]} of layer {html.escape(self._dreamed[0])} (dimmed: press "
                                        f"Dream for channel {self.channel})")

    def dream(self, wait: bool = True):
        """Dream the shown channel (what the Dream button does); ``wait``: return when it is done."""
        runner = self.dream_controls.start()
        if wait and runner is not None:
            runner.join()
        return runner

    # --- static --------------------------------------------------------------------------------
    def figure(self, cols: int = 4, **kwargs):
        import matplotlib.pyplot as plt

        if not self.hits:
            raise ValueError("No top images to draw (the layer is not in the index, or no image was indexed).")
        tiles = [self.card_rgb(h) for h in self.hits]
        rows = -(-len(tiles) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 1.9 * rows + 0.6), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for i, (ax, t, h) in enumerate(zip(axes.flat, tiles, self.hits)):
            ax.imshow(t)
            label = self.label(h)
            ax.set_title(f"#{i + 1} · {h.score:.3g}" + (f" · {label}" if label else ""), fontsize=9)
        fig.suptitle(f"{self.layer}, channel {self.channel}: top {len(tiles)} images by {self.by} "
                     "(frame: what the strongest unit sees)", fontsize=10)
        fig.tight_layout()
        return fig
