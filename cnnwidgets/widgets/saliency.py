"""Saliency: which pixels made the model pick this class? Seven attribution methods, one panel.

>>> sal = cw.Saliency(probe, cw.sample_image("chelsea"), compare=[cw.Probe(cw.load_model("resnet18"))])

Tabs: the map over the image (with a colour bar), all methods side by side, the same map on other
models, and the randomisation sanity check. All maths is in :mod:`cnnwidgets.analyses.attribution`.
"""
from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..analyses import attribution as A
from ..analyses import attribution_display as D
from ..images import sample_image, sample_names
from ..runner import Runner, Step
from ._base import Message, Panel, RunControls, set_image, uploaded_files

SLOW = ("smoothgrad", "integrated_gradients", "occlusion", "lime")
SHORT = {"saliency": "Vanilla gradient", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Grad.",
         "gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM", "occlusion": "Occlusion", "lime": "LIME"}
TILE = 224
AUTO = "auto"


def _label(text: str, width: str = "90px") -> W.HTML:
    return W.HTML(f"<b>{html.escape(text)}</b>", layout=W.Layout(width=width))


def _sized(rgb: np.ndarray, side: int = TILE) -> np.ndarray:
    """Nearest-neighbour resize so the shorter side is ``side`` (tiles line up whatever the model's input)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if min(h, w) == side:
        return rgb
    s = side / min(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


class Saliency(Panel):
    """Attribution maps for one image: the method, the class explained and the display are all
    controls; ``compare`` adds other probes (e.g. VGG vs ResNet, as in the NTU homework).

    Linkable traits: ``method`` (one of :data:`~cnnwidgets.analyses.attribution.METHODS`),
    ``target`` (class index), ``layer`` (Grad-CAM layer name).
    """

    method = T.Unicode("saliency").tag(sync=False)
    target = T.Int(0).tag(sync=False)
    layer = T.Unicode("").tag(sync=False)

    def __init__(self, probe, image=None, compare: Sequence | None = None, method: str = "saliency",
                 target: int | None = None, mode: str = "auto"):
        A.check_classifier(probe)
        self.probe = probe
        self.compare_probes = [probe] + [p for p in (compare or []) if p is not probe]
        self.mode = mode
        self.result: A.Attribution | None = None
        self.all_results: dict[str, A.Attribution] = {}
        self.compare_results: list[A.Attribution] = []
        self.sanity_steps: list[Step] = []
        self._runner: Runner | None = None
        self._generation = 0
        self._updating = False
        self._image = image
        self.message = Message()
        self._build()
        if self._image is None:
            self._image = sample_image("chelsea")
        super().__init__([self.header, self.controls, self.tabs, self.message],
                         layout=W.Layout(width="100%", max_width="1100px"))
        self.set_trait("layer", A.default_cam_layer(probe).name)
        self.set_trait("method", method)
        self.method_select.value = method
        self.layer_select.value = self.layer
        self._show_options()
        T.link((self.method_select, "value"), (self, "method"))
        T.link((self.layer_select, "value"), (self, "layer"))
        self.observe(self._on_method, "method")
        self.observe(self._on_target, "target")
        self.observe(self._on_layer, "layer")
        self.set_image(self._image, target=target)

    # --- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        p = self.probe
        s = {"description_width": "initial"}
        self.header = W.HTML()
        given = "(your image)"
        opts = sample_names() if self._image is None else [given] + sample_names()
        self.image_select = W.Dropdown(options=opts, value=opts[0] if self._image is not None else "chelsea",
                                       description="image", style=s, layout=W.Layout(width="220px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.method_select = W.Dropdown(options=[(A.LABELS[m], m) for m in A.METHODS], description="method",
                                        style=s, layout=W.Layout(width="280px"))
        self.top_buttons = [W.Button(layout=W.Layout(width="auto", max_width="230px")) for _ in range(5)]
        for i, b in enumerate(self.top_buttons):
            b.on_click(lambda _, i=i: self._pick_top(i))
        names = [p.class_name(i) for i in range(p.num_classes)]
        self.search = W.Combobox(options=names, placeholder="search a class by name, e.g. zebra", ensure_option=False,
                                 continuous_update=False, layout=W.Layout(width="260px"))
        # method options
        d = A.DEFAULTS
        self.sg_samples = W.IntSlider(d["smoothgrad"]["samples"], min=5, max=200, step=5, description="samples", style=s)
        self.sg_noise = W.FloatSlider(d["smoothgrad"]["noise"], min=0.0, max=0.5, step=0.05, description="noise σ", style=s)
        self.ig_steps = W.IntSlider(d["integrated_gradients"]["steps"], min=8, max=300, step=8, description="steps", style=s)
        self.baseline = W.Dropdown(options=list(A.BASELINES), value=d["integrated_gradients"]["baseline"],
                                   description="baseline", style=s, layout=W.Layout(width="190px"))
        self.layer_select = W.Dropdown(options=[(l.label, l.name) for l in A.spatial_layers(p)],
                                       description="Grad-CAM layer", style=s, layout=W.Layout(width="420px"))
        self.occ_window = W.IntSlider(d["occlusion"]["window"], min=8, max=112, step=8, description="window px", style=s)
        self.occ_baseline = W.Dropdown(options=list(A.BASELINES), value=d["occlusion"]["baseline"],
                                       description="fill", style=s, layout=W.Layout(width="160px"))
        self.lime_samples = W.IntSlider(d["lime"]["samples"], min=50, max=1000, step=50, description="samples", style=s)
        self.lime_segments = W.IntSlider(d["lime"]["segments"], min=10, max=200, step=10, description="superpixels", style=s)
        self.segmentation = W.Dropdown(options=["slic", "quickshift"], value="slic", description="segmentation", style=s,
                                       layout=W.Layout(width="210px"))
        self.option_rows = {
            "saliency": [],
            "smoothgrad": [self.sg_samples, self.sg_noise],
            "integrated_gradients": [self.ig_steps, self.baseline],
            "gradcam": [self.layer_select],
            "guided_gradcam": [self.layer_select],
            "occlusion": [self.occ_window, self.occ_baseline],
            "lime": [self.lime_samples, self.lime_segments, self.segmentation],
        }
        self.options_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.compute_button = W.Button(description="Compute", icon="refresh", tooltip="recompute with these options",
                                       layout=W.Layout(width="110px"))
        # display
        self.sign = W.ToggleButtons(options=[("magnitude", "abs"), ("signed ±", "signed")], value="abs",
                                    tooltips=["|attribution|: how much, either way", "red: for the class, blue: against"],
                                    style={"button_width": "110px"})
        self.cmap = W.Dropdown(options=[("auto", AUTO), ("gray", "gray"), ("jet", "jet"), ("inferno", "inferno"),
                                        ("diverging RdBu", "RdBu_r")], value=AUTO, description="colours", style=s,
                               layout=W.Layout(width="190px"))
        self.clip = W.FloatSlider(98.0, min=90.0, max=100.0, step=0.5, description="clip top %ile", style=s,
                                  readout_format=".1f")
        self.opacity = W.FloatSlider(0.6, min=0.0, max=1.0, step=0.05, description="map opacity", style=s)
        self.controls = W.VBox([
            W.HBox([self.image_select, self.upload, self.method_select]),
            W.HBox([_label("explain"), *self.top_buttons]),
            W.HBox([_label("other class"), self.search]),
            W.HBox([_label("options"), self.options_box, self.compute_button]),
            W.HBox([_label("display"), self.sign, self.cmap]),
            W.HBox([_label(""), self.clip, self.opacity]),
        ])
        # main view
        self.caption = W.HTML()
        self.image_view = W.Image(format="png", layout=W.Layout(width=f"{TILE}px", height=f"{TILE}px"))
        self.map_view = W.Image(format="png", layout=W.Layout(width=f"{TILE}px", height=f"{TILE}px"))
        self.bar = W.Image(format="png", layout=W.Layout(width="16px", height=f"{TILE}px"))
        self.bar_top, self.bar_mid, self.bar_bottom = W.HTML(), W.HTML(), W.HTML()
        labels = W.VBox([self.bar_top, self.bar_mid, self.bar_bottom],
                        layout=W.Layout(height=f"{TILE + 8}px", justify_content="space-between"))
        self.legend = W.HTML(layout=W.Layout(max_width="300px"))
        for w, c in ((self.map_view, "map"), (self.image_view, "image"), (self.caption, "caption"),
                     (self.method_select, "method"), (self.message, "message")):
            w.add_class(f"cnnw-saliency-{c}")
        self.single = W.VBox([self.caption, W.HBox([
            W.VBox([W.HTML("<i>image (as the model sees it)</i>"), self.image_view]),
            W.VBox([W.HTML("<i>attribution map</i>"), self.map_view]),
            W.VBox([W.HTML("&nbsp;"), W.HBox([self.bar, labels])]),
            W.VBox([W.HTML("&nbsp;"), self.legend], layout=W.Layout(margin="0 0 0 12px")),
        ])])
        # all methods / compare / sanity
        self.all_grid = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.all_run = RunControls(self._all_job, self._all_frame, total=lambda: len(A.METHODS), message=self.message,
                                   mode=self.mode, unit="method", panel=self)
        self.all_title, self.compare_title, self.sanity_title = W.HTML(), W.HTML(), W.HTML()
        self.all_tab = W.VBox([W.HTML("All seven methods on this image and class (each with the options set above); "
                                      "press Start."), self.all_run, self.all_title, self.all_grid])
        self.compare_grid = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.compare_run = RunControls(self._compare_job, self._compare_frame, total=lambda: len(self.compare_probes),
                                       message=self.message, mode=self.mode, unit="model", panel=self)
        hint = ("" if len(self.compare_probes) > 1 else
                " Pass <code>compare=[cw.Probe(other_model)]</code> to add models (VGG vs ResNet, as in the homework).")
        self.compare_tab = W.VBox([W.HTML("The same image, method and class on each model." + hint),
                                   self.compare_run, self.compare_title, self.compare_grid])
        self.sanity_steps_count = W.IntSlider(5, min=2, max=12, description="randomisation steps", style=s)
        self.sanity_grid = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.sanity_run = RunControls(self._sanity_job, self._sanity_frame, total=lambda: self.sanity_steps_count.value + 1,
                                      message=self.message, mode=self.mode, panel=self)
        self.sanity_tab = W.VBox([
            W.HTML("<b>Sanity check</b> (Adebayo et al. 2018): the model's weights are re-initialised from the top "
                   "(classifier) down, one group more at each step, on a copy of the model. A good explanation "
                   "<i>changes</i> when the model is destroyed: ρ (Spearman rank correlation with the trained "
                   "model's |map|) should fall towards 0. A map that stays the same is explaining the image, not "
                   "the model."),
            W.HBox([self.sanity_steps_count, self.sanity_run]), self.sanity_title, self.sanity_grid])
        self.tabs = W.Tab([self.single, self.all_tab, self.compare_tab, self.sanity_tab])
        for i, t in enumerate(["Map", "All methods", "Compare models", "Sanity check"]):
            self.tabs.set_title(i, t)
        # events
        self.image_select.observe(lambda c: c["new"] in sample_names() and self.set_image(sample_image(c["new"])), "value")
        self.upload.observe(self._on_upload, "value")
        self.search.observe(self._on_search, "value")
        self.compute_button.on_click(lambda _: self.refresh())
        for w in (self.sign, self.cmap, self.clip, self.opacity):
            w.observe(lambda _: self._redraw(), "value")
        for w in (self.sg_samples, self.sg_noise, self.ig_steps, self.baseline, self.occ_window, self.occ_baseline,
                  self.lime_samples, self.lime_segments, self.segmentation):
            w.observe(self._on_option, "value")

    # --- state ---------------------------------------------------------------------------------
    def options(self, method: str | None = None) -> dict:
        """The method's options as the controls set them (keywords of ``attribute``)."""
        m = method or self.method
        if m == "smoothgrad":
            return {"samples": self.sg_samples.value, "noise": self.sg_noise.value}
        if m == "integrated_gradients":
            return {"steps": self.ig_steps.value, "baseline": self.baseline.value}
        if m in ("gradcam", "guided_gradcam"):
            return {"layer": self.layer}
        if m == "occlusion":
            w = self.occ_window.value
            return {"window": w, "stride": max(1, w // 2), "baseline": self.occ_baseline.value}
        if m == "lime":
            return {"samples": self.lime_samples.value, "segments": self.lime_segments.value,
                    "segmentation": self.segmentation.value}
        return {}

    @property
    def image(self):
        return self._image

    def set_image(self, image, target: int | None = None) -> None:
        """Show another image (PIL, array, tensor or path); the target becomes its top-1 class."""
        try:
            self.display_image = A.pixels(self.probe, image)[0].cpu().numpy()
            self.top5 = A.top_classes(self.probe, image, 5)
        except Exception as e:
            self.message.exception(e)
            return
        self._image = image
        set_image(self.image_view, _sized(D.image_hwc(self.display_image)))
        for b, (i, name, prob) in zip(self.top_buttons, self.top5):
            b.description = f"{name} · {prob:.0%}"
            b.tooltip = f"explain class {i} ({name}); the model gives it p = {prob:.1%}"
        t = self.top5[0][0] if target is None else target
        self.all_results, self.compare_results, self.sanity_steps = {}, [], []
        for g in (self.all_grid, self.compare_grid, self.sanity_grid):
            g.children = []
        if t == self.target:
            self.refresh()
        else:
            self.target = t  # observer refreshes (and checks the range)

    # --- events --------------------------------------------------------------------------------
    def _on_method(self, change) -> None:
        self._show_options()
        self.refresh()

    def _on_layer(self, change) -> None:
        if self.method in ("gradcam", "guided_gradcam"):
            self.refresh()

    def _on_option(self, change) -> None:
        if change["owner"] not in self.option_rows.get(self.method, []):
            return  # another method's option: used when that method is picked
        if self.method in SLOW:
            self.message.info("Options changed: press Compute to recompute.")
        else:
            self.refresh()

    def _on_target(self, change) -> None:
        if self._updating:
            return
        try:
            A.check_target(self.probe, change["new"])
        except Exception as e:  # show it, keep the class that was there
            self._updating = True
            try:
                self.set_trait("target", change["old"])
            finally:
                self._updating = False
            self.message.exception(e)
            return
        self._style_buttons()
        self.refresh()

    def _pick_top(self, i: int) -> None:
        if i < len(self.top5):
            self.target = self.top5[i][0]

    def _on_search(self, change) -> None:
        q = (change["new"] or "").strip()
        if not q:
            return
        hits = A.find_classes(self.probe, q, 1)
        if not hits:
            self.message.warn(f"No class matches {q!r}.")
            return
        self.target = hits[0][0]

    def _on_upload(self, change) -> None:
        files = uploaded_files(self.upload)
        if files:
            import io

            from PIL import Image

            try:
                self.set_image(Image.open(io.BytesIO(files[-1][1])).convert("RGB"))
            except Exception as e:
                self.message.exception(e)

    def _show_options(self) -> None:
        rows = self.option_rows.get(self.method, [])
        self.options_box.children = rows or [W.HTML("<i>none: one gradient, exactly the homework's map</i>")]
        self.compute_button.layout.display = "" if self.method in SLOW else "none"

    def _style_buttons(self) -> None:
        for b, (i, *_r) in zip(self.top_buttons, getattr(self, "top5", [])):
            b.button_style = "primary" if i == self.target else ""
            b.icon = "check" if i == self.target else ""

    # --- computing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute the map for the current image, method, class and options."""
        self._generation += 1
        gen = self._generation
        method, target, opts = self.method, self.target, self.options()
        try:
            A.check_target(self.probe, target)
        except Exception as e:
            self.message.exception(e)
            return
        self._style_buttons()
        busy = f"Computing {A.LABELS[method]} for “{self.probe.class_name(target)}”…"
        if method in SLOW:
            busy += " (this one runs many forwards; it can take a while on a CPU)"
        self.message.info(busy)
        self.caption.value = f"<span style='color:#888'>{html.escape(busy)}</span>"

        def frame(item, final):
            if gen != self._generation:
                return  # a newer request superseded this one
            if item.value is None:
                self.message.info((item.info or {}).get("status", busy))
                return
            self.result = item.value
            self._redraw()
            self.message.info(f"{A.LABELS[method]}: {item.value.seconds:.1f} s")

        def error(e, text):
            if gen == self._generation:
                self.message.error(text)
                self.caption.value = ""

        job = A.attribute_steps(self.probe, self._image, method, target, **opts)
        self._runner = Runner(job, frame, fps=10, on_error=error, mode=self.mode)
        self._runner.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the map being computed is shown (for scripts and tests)."""
        return self._runner.join(timeout) if self._runner is not None else True

    # --- drawing -------------------------------------------------------------------------------
    def _cmap(self, sign: str) -> str:
        if self.cmap.value != AUTO:
            return self.cmap.value
        return D.DIVERGING if sign == "signed" else "jet"

    def _render(self, a: A.Attribution) -> tuple[np.ndarray, float, str, str]:
        sign = self.sign.value
        m = a.as_map(sign)
        cmap = self._cmap(sign)
        rgb, hi, _ = D.render_map(m, a.image, sign, cmap, self.clip.value, self.opacity.value)
        return _sized(rgb), hi, cmap, sign

    def _redraw(self) -> None:
        a = self.result
        if a is not None:
            rgb, hi, cmap, sign = self._render(a)
            set_image(self.map_view, rgb)
            set_image(self.bar, render.colorbar(cmap, height=256, width=16))
            lo = -hi if sign == "signed" else 0.0
            self.bar_top.value = f"<small>{hi:.3g}</small>"
            self.bar_mid.value = "<small>0</small>" if sign == "signed" else ""
            self.bar_bottom.value = f"<small>{lo:.3g}</small>"
            self.caption.value = self._caption(a)
            self.legend.value = self._legend(a, sign)
        for view, redraw in ((self.all_grid, self._draw_all), (self.compare_grid, self._draw_compare),
                             (self.sanity_grid, self._draw_sanity)):
            if view.children:
                redraw()

    def _caption(self, a: A.Attribution) -> str:
        layer = f" on layer <code>{html.escape(a.layer)}</code>" if a.layer else ""
        return (f"<div style='font-size:15px'><b>{html.escape(a.model)}</b> · <b>{html.escape(a.label)}</b>{layer} · "
                f"explaining class <b style='color:#1565c0'>{html.escape(a.target_name)}</b> ({a.target}), "
                f"p = {a.prob:.1%}</div>")

    def _legend(self, a: A.Attribution, sign: str) -> str:
        what = {
            "saliency": "|∂ score / ∂ pixel|, max over R, G, B",
            "smoothgrad": f"mean gradient over {a.options.get('samples')} noisy copies (σ = {a.options.get('noise')})",
            "integrated_gradients": f"gradients along the path from a {a.options.get('baseline')} image, "
                                    f"{a.options.get('steps')} steps; completeness error {a.delta:.2g}" if a.delta is not None else "",
            "gradcam": "class-weighted activations of the layer, ReLU, upsampled",
            "guided_gradcam": "guided backprop × Grad-CAM (guided only where the model uses nn.ReLU)",
            "occlusion": f"score drop when a {a.options.get('window')} px square is covered",
            "lime": f"weights of a linear model over {a.options.get('segments')} superpixels switched on/off",
        }[a.method]
        scale = ("red: pushes the score up · blue: pushes it down · white: no effect" if sign == "signed" else
                 "bright: large effect on the score · dark: little")
        return (f"<div style='line-height:1.35;font-size:12px'><b>map</b>: {html.escape(what)}<br><b>colours</b>: "
                f"{scale}; the top {100 - self.clip.value:g}% of values clipped<br><b>time</b>: {a.seconds:.1f} s</div>")

    def _tile(self, a: A.Attribution, title: str, sub: str = "") -> W.VBox:
        rgb, *_ = self._render(a)
        img = W.Image(format="png", layout=W.Layout(width="180px", height="180px"))
        set_image(img, rgb)
        text = f"<div style='line-height:1.3'><b>{html.escape(title)}</b>" + (f"<br><small>{sub}</small>" if sub else "") + "</div>"
        return W.VBox([W.HTML(text, layout=W.Layout(width="180px")), img], layout=W.Layout(margin="0 6px 6px 0"))

    # --- all methods ---------------------------------------------------------------------------
    def _all_job(self):
        opts = {m: self.options(m) for m in A.METHODS}
        return A.all_methods(self.probe, self._image, self.target, **opts)

    def _all_frame(self, item, final) -> None:
        self.all_results = item.value or {}
        self._draw_all()
        if not final:
            self.message.info((item.info or {}).get("status", ""))

    def _colour_key(self) -> str:
        """One line that says how to read the colours of the tiles (each tile scaled on its own)."""
        sign = self.sign.value
        cmap = self._cmap(sign)
        bar = render.encode(render.colorbar(cmap, height=120, width=10).transpose(1, 0, 2)[:, ::-1], "png")
        import base64

        src = "data:image/png;base64," + base64.b64encode(bar).decode()
        lo, hi = ("against the class", "for the class") if sign == "signed" else ("little effect", "large effect")
        return (f"<div style='font-size:12px;color:#444'>colours: {lo} <img src='{src}' style='height:10px;width:120px;"
                f"vertical-align:middle'> {hi} (each map scaled to its own {self.clip.value:g}th percentile)</div>")

    def _grid_title(self, results) -> str:
        a = next(iter(results), None)
        if a is None:
            return ""
        return (f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(a.model)}</b>"
                f" · explaining <b style='color:#1565c0'>{html.escape(a.target_name)}</b> ({a.target})</div>"
                + self._colour_key())

    def _draw_all(self) -> None:
        self.all_title.value = self._grid_title(self.all_results.values())
        self.all_grid.children = [self._tile(a, SHORT[a.method], f"{a.seconds:.1f} s") for a in self.all_results.values()]

    # --- compare models ------------------------------------------------------------------------
    def _compare_job(self):
        method, target = self.method, self.target

        def job():
            out: list[A.Attribution] = []
            for i, p in enumerate(self.compare_probes):
                t = target if p.num_classes == self.probe.num_classes else None
                opts = self.options(method) if p is self.probe else {k: v for k, v in self.options(method).items() if k != "layer"}
                out.append(A.attribute(p, self._image, method, t, **opts))
                yield Step(i + 1, len(self.compare_probes), list(out))
        return job()

    def _compare_frame(self, item, final) -> None:
        self.compare_results = item.value or []
        self._draw_compare()

    def _draw_compare(self) -> None:
        a = self.compare_results[0] if self.compare_results else None
        self.compare_title.value = "" if a is None else (
            f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(a.label)}</b> on each model</div>"
            + self._colour_key())
        self.compare_grid.children = [
            self._tile(a, a.model, f"{html.escape(a.target_name)} ({a.target}), p = {a.prob:.0%} · {a.seconds:.1f} s")
            for a in self.compare_results]

    # --- sanity check --------------------------------------------------------------------------
    def _sanity_job(self):
        steps = A.sanity_check(self.probe, self._image, self.method, self.target,
                               steps=self.sanity_steps_count.value, **self.options())

        def job():  # cumulative, so a frame the runner drops loses no tile
            done: list[Step] = []
            try:
                for s in steps:
                    done.append(s)
                    yield Step(s.step, s.total, list(done), s.info)
            finally:
                steps.close()
        return job()

    def _sanity_frame(self, item, final) -> None:
        self.sanity_steps = item.value or []
        self._draw_sanity()

    def _draw_sanity(self) -> None:
        first = self.sanity_steps[0].value if self.sanity_steps else None
        self.sanity_title.value = "" if first is None else (
            f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(first.label)}</b> for "
            f"<b style='color:#1565c0'>{html.escape(first.target_name)}</b> ({first.target}) as the weights are "
            "randomised, left to right</div>" + self._colour_key())
        tiles = []
        for s in self.sanity_steps:
            label = s.info["label"]
            short = label if len(label) < 40 else "…" + label[-38:]
            tiles.append(self._tile(s.value, f"ρ = {s.info['spearman']:.2f}",
                                    f"{html.escape(short)}<br>SSIM {s.info['ssim']:.2f}"))
        self.sanity_grid.children = tiles

    # --- static --------------------------------------------------------------------------------
    def figure(self, view: str | None = None):
        """A matplotlib figure of the map (``view="map"``) or of the other tabs (``"all"``, ``"compare"``,
        ``"sanity"``); default: the tab shown."""
        import matplotlib.pyplot as plt
        from matplotlib import colors

        view = view or ["map", "all", "compare", "sanity"][self.tabs.selected_index or 0]
        if view == "map" or (view == "all" and not self.all_results) or (view == "compare" and not self.compare_results) \
                or (view == "sanity" and not self.sanity_steps):
            a = self.result
            if a is None:
                raise RuntimeError("Nothing to draw yet: the map is still being computed (call .join()).")
            rgb, hi, cmap, sign = self._render(a)
            fig, ax = plt.subplots(1, 2, figsize=(9, 4.4))
            ax[0].imshow(D.image_hwc(a.image))
            ax[0].set_title("image (as the model sees it)", fontsize=10)
            ax[1].imshow(rgb)
            ax[1].set_title(f"{a.label}" + (f" · {a.layer}" if a.layer else ""), fontsize=10)
            for x in ax:
                x.axis("off")
            norm = colors.Normalize(-hi if sign == "signed" else 0, hi)
            fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax[1], fraction=0.046, pad=0.04)
            fig.suptitle(f"{a.model}: why “{a.target_name}” ({a.target}, p = {a.prob:.1%})?")
            return fig
        if view == "all":
            items = [(a, a.label) for a in self.all_results.values()]
        elif view == "compare":
            items = [(a, f"{a.model}\n{a.target_name} p={a.prob:.0%}") for a in self.compare_results]
        else:
            items = [(s.value, f"ρ = {s.info['spearman']:.2f}\n{s.info['label'][:30]}") for s in self.sanity_steps]
        n = len(items)
        fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1), squeeze=False)
        for ax, (a, title) in zip(axes[0], items):
            ax.imshow(self._render(a)[0])
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        first = items[0][0]
        fig.suptitle({"all": f"{first.model}: all methods for “{first.target_name}”",
                      "compare": f"{first.label}: models compared",
                      "sanity": f"Sanity check, {first.label}: top layers randomised step by step"}[view])
        return fig
