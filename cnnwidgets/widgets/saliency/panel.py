"""The Saliency panel: which pixels made the model pick this class?"""
from __future__ import annotations

import html
import io
import re
from typing import Sequence

import ipywidgets as W
import traitlets as T

from ... import render
from ...analyses import attribution as A
from ...images import sample_image, sample_names
from ...runner import default_mode
from .._base import Message, Panel, clear_upload, uploaded_files
from .display import STYLE, DisplayControls
from .grids import AllMethods, CompareModels, SanityCheck
from .mapview import MapView
from .options import OptionControls
from .slot import Slot

YOURS = "(your image)"


class _Line:
    """The panel's message line as a job slot writes to it: each line says what runs, in the user's words."""

    def __init__(self, message: Message, label):
        self.message, self.label = message, label

    def _say(self, text: str) -> str:
        label = self.label()
        if text.startswith(label):
            return text
        text = re.sub(r"^done: 1 / 1 [\w ]+? in ", "done in ", text)
        return f"{label}: {re.sub(r'^done: ', 'done, ', text)}"

    def info(self, text: str) -> None:
        self.message.info(self._say(text))

    def warn(self, text: str) -> None:
        self.message.warn(self._say(text))

    def error(self, text: str) -> None:
        self.message.error(self._say(text))

    def exception(self, e: BaseException) -> None:
        self.message.exception(e)

    def clear(self) -> None:
        self.message.clear()


TABS = ("map", "all", "compare", "sanity")  #: the tabs, in order (``tab=``, ``figure(view)``)


def _label(text: str, width: str = "90px") -> W.HTML:
    return W.HTML(f"<b>{html.escape(text)}</b>", layout=W.Layout(width=width))


class Saliency(Panel):
    """Attribution maps for one image: the method, the class explained and the display are all
    controls; ``compare`` adds other probes (e.g. VGG vs ResNet, as in the NTU homework).

    The panel shows first and computes after (a background thread; on Colab once it is displayed;
    ``join()`` computes and waits, for scripts). Every map streams into its tab with a progress bar and Stop.
    Linkable traits: ``method`` (one of :data:`~cnnwidgets.analyses.attribution.METHODS`),
    ``target`` (class index), ``layer`` (Grad-CAM layer name). ``cmap``: the maps' colours (``"gray"``, ``"jet"``,
    any matplotlib colormap; ``"auto"``: jet for magnitudes, red–blue for signed maps), also the ``colours`` menu.
    ``tab``: the tab shown first, ``"map"``, ``"all"`` (all methods), ``"compare"`` (the models) or ``"sanity"``;
    its maps are computed at once.
    """

    method = T.Unicode("saliency").tag(sync=False)
    target = T.Int(0).tag(sync=False)
    layer = T.Unicode("").tag(sync=False)

    def __init__(self, probe, image=None, compare: Sequence | None = None, method: str = "saliency",
                 target: int | None = None, mode: str = "auto", cmap: str = "auto", tab: str = "map"):
        if tab not in TABS:
            raise ValueError(f"tab must be one of {list(TABS)}, got {tab!r}.")
        A.check_classifier(probe)
        A.get(method)
        if cmap != "auto":
            render.lut(cmap)  # an unknown colormap: one clear error, before anything is built
        self.probe = probe
        self.compare_probes = [probe] + [p for p in (compare or []) if p is not probe]
        self.mode = default_mode() if mode == "auto" else mode
        self.result: A.Attribution | None = None
        self._image = None
        self._building = True
        self.message = Message()
        self.message.add_class("cnnw-saliency-message")
        self.display = DisplayControls(self._redraw)
        self.opts = OptionControls(probe, self._on_option)
        self.map = MapView(self.display)
        self.map_run = Slot(self._map_job, self._map_frame, message=_Line(self.message, self._method_label),
                            mode=self.mode, start=False, pause=False, stale=self.map.stale, panel=self, fps=4)
        self.grids = [AllMethods(self, self.display, _Line(self.message, lambda: "All methods")),
                      CompareModels(self, self.display, _Line(self.message, lambda: "Compare models")),
                      SanityCheck(self, self.display, _Line(self.message, lambda: "Sanity check"))]
        self.all_tab, self.compare_tab, self.sanity_tab = self.grids
        self._build(image is not None)
        super().__init__([self.controls, self.tabs, self.message], layout=W.Layout(width="100%", max_width="1100px"))
        if cmap not in [v for _, v in self.display.cmap.options]:
            self.display.cmap.options = [*self.display.cmap.options, (cmap, cmap)]
        self.display.cmap.value = cmap
        self.set_trait("layer", A.default_cam_layer(probe).name)
        self.set_trait("method", method)
        self.method_select.value = method
        self.opts.layer.value = self.layer
        self._links = [T.link((self.method_select, "value"), (self, "method")),
                       T.link((self.opts.layer, "value"), (self, "layer"))]
        self._on_close.extend(link.unlink for link in self._links)
        self.observe(self._on_method, "method")
        self.observe(self._on_target, "target")
        self.observe(self._on_layer, "layer")
        self._show_options()
        self.set_image(sample_image("chelsea") if image is None else image, target=target)
        self._building = False
        if self._image is not None:
            self.autostart(self.map_run)  # a thread now, or (foreground) once the panel is on screen
            if tab != "map":  # that tab shown, and computed after the map
                self.tabs.selected_index = TABS.index(tab)
                self.autostart(self.grids[TABS.index(tab) - 1].run)

    # --- building ------------------------------------------------------------------------------
    def _build(self, given: bool) -> None:
        opts = [YOURS] + sample_names() if given else sample_names()
        self.image_select = W.Dropdown(options=opts, value=YOURS if given else "chelsea", description="image",
                                       style=STYLE, layout=W.Layout(width="220px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.method_select = W.Dropdown(options=[(m.label, m.name) for m in A.registered(self.probe)], description="method",
                                        style=STYLE, layout=W.Layout(width="280px"))
        self.method_select.add_class("cnnw-saliency-method")
        self.top_buttons = [W.Button(layout=W.Layout(width="auto", max_width="230px")) for _ in range(5)]
        for i, b in enumerate(self.top_buttons):
            b.on_click(lambda _, i=i: self._pick_top(i))
        names = A.class_names(self.probe)
        example = "zebra" if "zebra" in names else names[-1]
        self.search = W.Combobox(options=names, placeholder=f"search a class by name, e.g. {example}",
                                 ensure_option=False, continuous_update=False, layout=W.Layout(width="260px"))
        self.options_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.no_options = W.HTML("<i>none: computed at once</i>")
        self.compute_button = W.Button(description="Compute", icon="refresh", tooltip="compute the map with these options",
                                       layout=W.Layout(width="110px"))
        d = self.display
        self.controls = W.VBox([
            W.HBox([self.image_select, self.upload, self.method_select]),
            W.HBox([_label("explain"), *self.top_buttons]),
            W.HBox([_label("other class"), self.search]),
            W.HBox([_label("options"), self.options_box, self.compute_button]),
            W.HBox([_label("display"), d.sign, d.cmap]),
            W.HBox([_label(""), d.clip, d.opacity]),
        ])
        self.map_tab = W.VBox([self.map.caption, self.map_run, self.map.images])
        self.tabs = W.Tab([self.map_tab] + [g.box for g in self.grids])
        for i, t in enumerate(["Map", "All methods", "Compare models", "Sanity check"]):
            self.tabs.set_title(i, t)
        self.image_select.observe(self._on_sample, "value")
        self.upload.observe(self._on_upload, "value")
        self.search.observe(self._on_search, "value")
        self.compute_button.on_click(lambda _: self.refresh())
        self.tabs.observe(lambda _: self.check_weights(), "selected_index")

    # --- state ---------------------------------------------------------------------------------
    def options(self, method: str | None = None) -> dict:
        """The method's options as the controls set them (keywords of ``attribute``)."""
        return self.opts.values(method or self.method)

    @property
    def image(self):
        return self._image

    @property
    def all_results(self) -> dict:
        return self.all_tab.value or {}

    @property
    def compare_results(self) -> list:
        return self.compare_tab.value or []

    @property
    def sanity_steps(self) -> list:
        return self.sanity_tab.steps

    def _method_label(self) -> str:
        return A.get(self.method).label

    def set_image(self, image, target: int | None = None) -> None:
        """Show another image (PIL, array, tensor or path); the target becomes its top-1 class."""
        try:
            x = A.pixels(self.probe, image)
            self.top5 = A.top_classes(self.probe, image, 5)
        except Exception as e:
            self.message.exception(e)
            return
        self._image = image
        self.map.show_image(x[0].cpu().numpy())
        for b, (i, name, prob) in zip(self.top_buttons, self.top5):
            b.description = f"{name} · {prob:.0%}"
            b.tooltip = f"explain class {i} ({name}); the model gives it p = {prob:.1%}"
        for g in self.grids:
            g.clear()
        t = self.top5[0][0] if target is None else target
        if t == self.target:
            self.refresh()
        else:
            self.target = t  # the observer checks the range and refreshes

    # --- events --------------------------------------------------------------------------------
    def _on_method(self, change) -> None:
        self._show_options()
        self.refresh()

    def _on_layer(self, change) -> None:
        if self.opts.uses_layer(self.method):
            self.refresh()

    def _on_option(self, method: str) -> None:
        if method != self.method:
            return  # another method's option: used when that method is picked
        if A.get(method).slow:
            self.message.info("Options changed: press Compute to compute the map with them.")
        else:
            self.refresh()

    def _on_target(self, change) -> None:
        if getattr(self, "_reverting", False):
            return
        try:
            A.check_target(self.probe, change["new"])
        except Exception as e:  # show it, keep the class that was there
            self._reverting = True
            try:
                self.set_trait("target", change["old"])
            finally:
                self._reverting = False
            self.message.exception(e)
            return
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

    def _on_sample(self, change) -> None:
        if change["new"] in sample_names():
            self.set_image(sample_image(change["new"]))

    def _on_upload(self, change) -> None:
        files = uploaded_files(self.upload)
        if not files:
            return
        name, content = files[-1]
        clear_upload(self.upload)  # the same file uploaded again is then a change, and is taken again
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(content)) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            self.message.error(f"{name!r} is not an image file (PNG, JPEG, GIF, BMP, TIFF, WebP ...): "
                               f"{type(e).__name__}. Upload a picture instead.")
            return
        self.set_image(img)

    def _show_options(self) -> None:
        rows = self.opts.row(self.method)
        self.options_box.children = rows or [self.no_options]
        self.compute_button.layout.display = "" if A.get(self.method).slow else "none"

    def _style_buttons(self) -> None:
        for b, (i, *_r) in zip(self.top_buttons, getattr(self, "top5", [])):
            b.button_style = "primary" if i == self.target else ""
            b.icon = "check" if i == self.target else ""

    # --- computing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Compute the map for the current image, method, class and options; the one being computed stops."""
        self._style_buttons()
        if self._building:
            return
        self.compute_button.description = "Compute"
        self.map_run.start()

    def _map_job(self):
        m = A.get(self.method)
        job = A.attribute_steps(self.probe, self._image, m.name, self.target, stop=self.map_run.event(),
                                **self.options())  # method, options and class checked here
        self.map_run.unit = m.unit
        if self._weights_seen is not None and self.probe.weights_version() != self._weights_seen:
            for g in self.grids:
                g.outdated()
        self.mark_weights()
        return job

    def _map_frame(self, item, final) -> None:
        if item.value is None:
            self.map.dim(True)  # nothing new to show yet: the old map stays dimmed
        else:
            self.map.dim(False)
            self.result = item.value
            self.map.show(item.value)
        if not final:
            self.map_run.message.info(item.info["status"])

    def on_weights_changed(self) -> None:
        """The model was trained (or edited) since the maps were computed: a fast map is computed again; a slow one
        is dimmed, with a Refresh button; the grids say that they are outdated."""
        for g in self.grids:
            g.outdated()
        if not A.get(self.method).slow:
            self.refresh()
            return
        self.map.dim(True)
        self.compute_button.description = "Refresh"
        self.compute_button.layout.display = ""
        self.message.warn("The model's weights changed since this map was computed: press Refresh to compute it again.")

    def _redraw(self) -> None:
        if self.check_weights() and not A.get(self.method).slow:
            return  # recomputing: the new map is drawn as it comes
        if self.result is not None:
            self.map.show(self.result)
        for g in self.grids:
            if g.value:
                g.draw()

    # --- static --------------------------------------------------------------------------------
    def figure(self, view: str | None = None):
        """A matplotlib figure of the map (``view="map"``) or of the other tabs (``"all"``, ``"compare"``,
        ``"sanity"``); default: the tab shown."""
        from .figure import figure

        return figure(self, view or ["map", "all", "compare", "sanity"][self.tabs.selected_index or 0])
