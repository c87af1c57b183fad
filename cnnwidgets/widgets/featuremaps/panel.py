"""FeatureMaps: every channel of one layer for one image, a layer slider, a channel picker and a large view.

The panel holds the state (layer, channel, image, order, page) and wires the controls; what it shows is drawn by
the views in :mod:`.views` (grid, bars, large view, filters) and, statically, by :mod:`.figure`.
"""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import traitlets as T

from ... import render
from ...analyses import stats
from .._base import LayerSlider, Message, Panel, image_widget, set_image
from .._controls import ImageInput
from . import mosaic
from .figure import static_figure
from .controls import Options
from .views import GRID_W, PAD, DetailView, FiltersView, GridView, UnitsView, div, fmt, grid_notes

class FeatureMaps(Panel):
    """All channels of a layer for one image, like seed 000's mosaics, live.

    >>> fm = cw.FeatureMaps(probe, cw.sample_image("chelsea"))
    >>> fm.layer = probe.layers[10].name; fm.channel = 5     # or use the slider and click a tile

    Traits for linking: ``layer`` (module name) and ``channel`` (index). Options: ``cmap``,
    ``norm`` (``"channel"``/``"layer"``), ``order`` (``"index"``/``"mean"``), ``hide_dead``,
    ``page``. Layers with many channels are split into pages of ``max_tiles`` tiles; tiles larger
    than the display are averaged down (the large view is always at full resolution).
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    cmap = T.Unicode("viridis").tag(sync=False)
    norm = T.Unicode("channel").tag(sync=False)
    order = T.Unicode("index").tag(sync=False)
    hide_dead = T.Bool(False).tag(sync=False)
    page = T.Int(0).tag(sync=False)

    def __init__(self, probe, image=None, layer=None, *, cmap: str = "viridis", max_tiles: int = 256,
                 max_pixels: int = 2**18):
        self.probe = probe
        self.max_tiles = max_tiles
        self.max_pixels = max_pixels
        self.message = Message()
        self._busy = False
        self._x = None  # the prepared input, on the probe's device
        self._acts = None  # CxHxW (or units) of the current layer, CPU
        self._visible = np.zeros(0, int)
        self._ndead = 0
        self._plan = None
        self._range = (0.0, 0.0)
        self._nonfinite = (0, 0, 0)
        self._memo: dict[str, np.ndarray] = {}  # this image's activations by layer (views of the Probe's cache)
        self._memo_version = None  # the weights they were computed with

        # --- controls ----------------------------------------------------------------------
        first = probe.layer(layer).name if layer is not None else probe.require_layers("FeatureMaps")[0].name
        self.layer_control = LayerSlider(probe, value=first, on_move=lambda name: setattr(self, "layer", name))
        self.slider, self.layer_label = self.layer_control.slider, self.layer_control.caption
        self.options = Options(probe.layer(first).shape[0], cmap)
        o = self.options
        self.channel_picker, self.cmap_picker, self.norm_picker = o.channel, o.cmap, o.norm
        self.order_picker, self.dead_box = o.order, o.dead
        self.input = ImageInput(probe, image, self.message)
        self.prev_button, self.next_button, self.page_label = o.prev, o.next, o.page_label

        # --- views -------------------------------------------------------------------------
        self.header = W.HTML()
        self.notes = W.HTML()
        self.input_view = image_widget(width="200px")
        self.grid_view = GridView(self._on_grid_click)
        self.units_view = UnitsView(lambda unit: setattr(self, "channel", unit))
        self.detail = DetailView()
        self.filters = FiltersView()
        # the views' widgets, by the names scripts and tests use
        self.grid_mark, self.grid_figure, self._sel = self.grid_view.mark, self.grid_view.figure, self.grid_view.outline_mark
        self.units_mark, self.units_figure = self.units_view.mark, self.units_view.figure
        self.big_view, self.big_title, self.big_box = self.detail.image, self.detail.title, self.detail.box
        self.filters_view, self.filters_caption = self.filters.image, self.filters.caption

        fixed = dict(flex="0 0 auto")
        self.preprocessing = W.HTML(div(f"<span style='font-size:11px;color:#666'>{html.escape(probe.describe_preprocessing())}"
                                        "</span>"))
        left = W.VBox([W.HTML("<b>input</b> <span style='color:#666'>(as the model sees it)</span>"), self.input_view,
                       self.preprocessing, self.filters_caption, self.filters_view],
                      layout=W.Layout(width="210px", margin="0 8px 0 0", **fixed))
        centre = W.VBox([self.header, o.pages, self.grid_figure, self.units_figure, self.notes],
                        layout=W.Layout(width=f"{GRID_W + 16}px", **fixed))
        for w, cls in ((self, "cnnw-featuremaps"), (self.slider, "cnnw-layer-slider"), (self.grid_figure, "cnnw-grid"),
                       (self.layer_label, "cnnw-layer-label"), (self.units_figure, "cnnw-units"), (self.input_view, "cnnw-input")):
            w.add_class(cls)
        super().__init__([
            W.HTML(DetailView.CSS + "<b>Feature maps</b> — every channel of the chosen layer for one input image. "
                   "<span style='color:#666'>Move the slider to change layer; click a tile (or type a channel) "
                   "for a large view.</span>"),
            self.slider, self.layer_label, self.input, o.box, self.message,
            W.HBox([left, centre, self.big_box], layout=W.Layout(flex_flow="row wrap")),
        ])

        # --- wiring ------------------------------------------------------------------------
        self.channel_picker.observe(lambda ch: setattr(self, "channel", int(ch["new"])), "value")
        self.cmap_picker.observe(lambda ch: setattr(self, "cmap", ch["new"]), "value")
        self.norm_picker.observe(lambda ch: setattr(self, "norm", ch["new"]), "value")
        self.order_picker.observe(lambda ch: setattr(self, "order", ch["new"]), "value")
        self.dead_box.observe(lambda ch: setattr(self, "hide_dead", ch["new"]), "value")
        self.prev_button.on_click(lambda _: self._turn(-1))
        self.next_button.on_click(lambda _: self._turn(+1))
        self.input.on_change(self._on_image)

        self._show_filters()
        self.set_trait("layer", first)
        self.cmap = cmap
        self._on_image(self.input.image)
        self.mark_weights()

    # --- public --------------------------------------------------------------------------------
    def set_image(self, image, name: str = "your image") -> None:
        """Show the maps for ``image`` (path, PIL, array or tensor)."""
        try:
            self.input.set_image(image, name)
        except Exception as e:  # not an image: say so in the panel
            self.message.exception(e)

    @property
    def grid_image(self) -> W.Image:
        """The ``ipywidgets.Image`` holding the grid PNG the panel shows (current page)."""
        return self.grid_mark.image

    @property
    def _grid_rgb(self) -> np.ndarray | None:
        """The pixels of the grid PNG shown (None when no grid is)."""
        return self.grid_view.rgb

    @property
    def visible_channels(self) -> np.ndarray:
        """Channel indices in display order (after ordering and hiding dead channels)."""
        return self._visible

    @property
    def plan(self) -> stats.GridPlan | None:
        return self._plan

    @property
    def activations(self):
        """The current layer's output for the current image (CPU tensor, without the batch dimension)."""
        return self._acts

    def on_weights_changed(self) -> None:
        """The model was trained or edited since the maps were computed: show the current ones."""
        self._update(keep_page=True)

    # --- observers -----------------------------------------------------------------------------
    @T.validate("layer")
    def _valid_layer(self, proposal):
        return self.probe.layer(proposal["value"]).name  # KeyError with close names

    @T.observe("layer")
    def _layer_changed(self, change):
        self.layer_control.show(change["new"])
        self._update(keep_page=False)

    @T.validate("channel")
    def _valid_channel(self, proposal):
        n = self._nchannels()
        c = int(proposal["value"])
        if not 0 <= c < n:
            raise T.TraitError(f"Channel {c} is out of range: layer {self.layer!r} has {n} channels (0..{n - 1}).")
        return c

    @T.observe("channel")
    def _channel_changed(self, change):
        if self.channel_picker.value != change["new"]:
            self.channel_picker.value = change["new"]
        if self._plan is not None and not self._busy:
            pos = np.flatnonzero(self._visible == change["new"])
            if pos.size and self._plan.page_of(int(pos[0])) != self.page:
                self.page = self._plan.page_of(int(pos[0]))  # re-renders the grid
        self._render_selection()

    @T.observe("cmap", "norm")
    def _style_changed(self, change):
        for w, v in ((self.cmap_picker, self.cmap), (self.norm_picker, self.norm)):
            if w.value != v:
                if v not in [o[1] if isinstance(o, tuple) else o for o in w.options]:
                    w.options = [*w.options, v]
                w.value = v
        if self._busy:
            return
        self._render_grid()
        self._render_selection()

    @T.observe("order", "hide_dead")
    def _filter_changed(self, change):
        if self.order_picker.value != self.order:
            self.order_picker.value = self.order
        if self.dead_box.value != self.hide_dead:
            self.dead_box.value = self.hide_dead
        if not self._busy:
            self._update(keep_page=False)

    @T.validate("cmap")
    def _valid_cmap(self, proposal):
        render.lut(proposal["value"])  # ValueError naming good colormaps
        return proposal["value"]

    @T.validate("norm")
    def _valid_norm(self, proposal):
        if proposal["value"] not in ("channel", "layer"):
            raise T.TraitError(f"norm must be 'channel' or 'layer', got {proposal['value']!r}.")
        return proposal["value"]

    @T.validate("order")
    def _valid_order(self, proposal):
        if proposal["value"] not in ("index", "mean"):
            raise T.TraitError(f"order must be 'index' or 'mean' (mean activation), got {proposal['value']!r}.")
        return proposal["value"]

    @T.validate("page")
    def _valid_page(self, proposal):
        pages = self._plan.pages if self._plan is not None else 1
        return int(min(max(0, proposal["value"]), pages - 1))

    @T.observe("page")
    def _page_changed(self, change):
        if not self._busy:
            self._render_grid()
            self._render_selection()

    def _turn(self, step: int) -> None:
        self.page = self.page + step

    def _on_image(self, image) -> None:
        self.message.clear()
        try:
            x = self.probe.prepare(image)
            self._x = x
            self._memo = {}
            self._prefetch()
            rgb = render.image_rgb(self.probe.display(image)[0])
            set_image(self.input_view, rgb)
        except Exception as e:
            self.message.exception(e)
            return
        want = tuple(self.probe.transform.input_size)
        got = tuple(x.shape[-2:])
        if got != want:
            self.message.warn(f"This image is {got[0]}×{got[1]} after preprocessing; the model was set up with "
                              f"{want[0]}×{want[1]} inputs. Layers after a fixed-size part (e.g. a Linear layer) "
                              f"may fail.")
        self._update(keep_page=True)

    def _prefetch(self) -> None:
        """One forward to the deepest conv layer: the Probe caches the layers on the way (as many as its
        ``cache_bytes`` budget holds), so the slider is instant."""
        try:
            self.probe.activations(self._x, self.probe.layers.names[-1], preprocess=False)
        except Exception:  # e.g. a wrong-size image failing deep in the model: _load says why
            pass

    def _on_grid_click(self, mark, content) -> None:
        data = content.get("data", {}) if isinstance(content, dict) else {}
        self._last_click = data
        self.select_at(float(data.get("click_x", -1)), float(data.get("click_y", -1)), flipped=True)

    def select_at(self, x: float, y: float, flipped: bool = False) -> int | None:
        """Select the channel of the tile at grid pixel ``(x, y)`` (``flipped``: y counted from the bottom)."""
        if self._plan is None or self._grid_rgb is None:
            return None
        if flipped:
            y = self._grid_rgb.shape[0] - y
        pos = self._plan.tile_at(self.page, x, y)
        if pos is None:
            return None
        self.channel = int(self._visible[pos])
        return self.channel

    # --- computing -----------------------------------------------------------------------------
    def _nchannels(self) -> int:
        if self._acts is not None:
            return int(self._acts.shape[0])
        try:
            return int(self.probe.layer(self.layer).shape[0])
        except Exception:
            return 1

    def _is_maps(self) -> bool:
        a = self._acts
        return a is not None and a.ndim == 3 and a.shape[1] * a.shape[2] > 1

    def _load(self) -> bool:
        self._acts = None
        if self._x is None or not self.layer:
            return False
        version = self.probe.weights_version()
        if version != self._memo_version:  # trained or edited since: these activations are stale
            self._memo, self._memo_version = {}, version
            self._show_filters()
            self._weights_seen = version
        if self.layer in self._memo:  # a slider move back to a layer seen for this image: no hashing of the input
            self._acts = self._memo[self.layer]
            return True
        try:
            a = self.probe.activations(self._x, self.layer, preprocess=False)
        except Exception as e:
            want = tuple(self.probe.transform.input_size)
            got = tuple(self._x.shape[-2:])
            if got != want:
                self.message.error(
                    f"The model failed on this {got[0]}×{got[1]} image at layer {self.layer}: it expects "
                    f"{want[0]}×{want[1]} inputs. Resize the image to {want[0]}×{want[1]}, or let the Probe do it: "
                    f"Probe(model, input_size=({want[0]}, {want[1]})). ({type(e).__name__}: {e})")
            else:
                self.message.exception(e)
            return False
        self._acts = stats._np(a[0].float())  # numpy from here on: single-threaded, predictable latency
        self._memo[self.layer] = self._acts
        return True

    def _update(self, keep_page: bool) -> None:
        """New layer, image, order or dead-channel filter: recompute what the grid shows and draw it."""
        self._busy = True
        try:
            ok = self._load()
            a = self._acts
            n = int(a.shape[0]) if a is not None and a.ndim >= 1 else 1
            self.channel_picker.max = max(0, n - 1)
            if self.channel > n - 1:
                self.set_trait("channel", n - 1)
            if not ok:
                self._plan = None
                return
            self._nonfinite = stats.nonfinite_counts(a)
            if self._is_maps():
                self._visible, self._ndead = stats.visible_channels(a, self.order, self.hide_dead)
                _, h, w = a.shape
                self._plan = stats.plan_grid(len(self._visible), h, w, self.max_tiles, self.max_pixels)
                self._range = self._layer_range(a)
                if not keep_page:
                    pos = np.flatnonzero(self._visible == self.channel)
                    self.page = self._plan.page_of(int(pos[0])) if pos.size else 0
                else:
                    self.page = self.page  # clamp
            else:
                self._plan = None
                self._visible = np.arange(n)
                self._ndead = 0
        finally:
            self._busy = False
        self._render_grid()
        self._render_selection()

    @staticmethod
    def _layer_range(a) -> tuple[float, float]:
        return stats.finite_range(a)

    def page_tiles(self, page: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Channel indices on ``page`` and their tiles as shown (float ``NxhxW`` in [0, 1], NaN/inf kept)."""
        k = self.page if page is None else page
        chans = self._visible[list(self._plan.page(k))]
        maps = self._acts[chans] if len(chans) else self._acts[:0]
        if self.norm == "layer":
            unit = render.normalize(maps, lo=self._range[0], hi=self._range[1])
        else:
            unit = render.normalize(maps, "channel")
        return chans, stats.downsample(unit, self._plan.scale)

    # --- drawing -------------------------------------------------------------------------------
    def _render_grid(self) -> None:
        layer = self.probe.layer(self.layer) if self.layer else None
        label = html.escape(layer.label) if layer is not None else ""
        if self._acts is None:
            self.header.value = f"<b>{label}</b>"
            self._show(grid=False, units=False)
            self.notes.value = ""
            return
        if not self._is_maps():
            self._render_units(layer)
            return
        plan = self._plan
        notes = grid_notes(self._acts, self._ndead, self.hide_dead, self._nonfinite, plan)
        order = "by mean activation (highest first)" if self.order == "mean" else "by index"
        norm = "each map scaled to its own range" if self.norm == "channel" else \
            f"all maps share the layer's range [{fmt(self._range[0])}, {fmt(self._range[1])}]"
        self.header.value = div(f"<b>{plan.label(self.page)}</b> <span style='color:#666'>({order}; {norm})</span>")
        self.page_label.value = f"&nbsp;page {self.page + 1} of {plan.pages}"
        pager = plan.pages > 1
        for b in (self.prev_button, self.next_button, self.page_label):
            b.layout.display = None if pager else "none"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= plan.pages - 1
        self.notes.value = div("<br>".join(notes))
        if plan.n == 0:
            self.grid_view.rgb = None
            self._show(grid=False, units=False)
            self.notes.value = div("<br>".join(notes + ["every channel is dead for this image: nothing to show"]))
            return
        _, tiles = self.page_tiles()
        # light-gray gaps, so that white (+inf) or pale tiles keep their edges
        self.grid_view.draw(render.mosaic(render.colorize(tiles, self.cmap), plan.cols(self.page), pad=plan.pad, pad_value=PAD))
        self._show(grid=True, units=False)

    def _render_units(self, layer) -> None:
        a = self._acts.reshape(-1) if self._acts.ndim == 3 else self._acts
        if a.ndim != 1:
            self.header.value = f"<b>{html.escape(layer.label)}</b>"
            self.notes.value = (f"This layer's output has shape {tuple(self._acts.shape)}: neither maps (C×H×W) nor "
                                f"a vector of units, so it is not drawn here. Pick a conv layer.")
            self._show(grid=False, units=False)
            return
        v = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        self.units_view.draw(v, int(self.channel))
        self.header.value = div(f"<b>{html.escape(layer.label)}</b><br>This {layer.type} layer gives a vector of "
                             f"{len(v)} units, not feature maps: one bar per unit (click a bar to select it).")
        nan, pinf, ninf = self._nonfinite
        self.notes.value = (f"<span style='color:#b00020'>non-finite values drawn as 0: {nan} NaN, {pinf} +inf, "
                            f"{ninf} −inf</span>" if nan or pinf or ninf else "")
        for b in (self.prev_button, self.next_button, self.page_label):
            b.layout.display = "none"
        self._show(grid=False, units=True)

    def _show(self, grid: bool, units: bool) -> None:
        self.grid_figure.layout.display = None if grid else "none"
        self.units_figure.layout.display = None if units else "none"
        self.big_box.layout.display = None if grid else "none"
        if not grid:
            self.grid_view.hide_outline()

    def channel_unit(self) -> np.ndarray:
        """The selected channel as the large view draws it: values scaled to [0, 1] (NaN/inf kept)."""
        m = self._acts[self.channel]
        if self.norm == "layer":
            return render.normalize(m, lo=self._range[0], hi=self._range[1])
        return render.normalize(m, "channel")

    def _aside(self, c: int) -> list[tuple[str, float]]:
        """A token layer's set-aside tokens (class, register) at channel ``c``, for this image: [(name, value)]."""
        r = getattr(self.probe.layer(self.layer), "reshape", None)
        if r is None or r.kind != "tokens" or not r.extra:
            return []
        key = f"{self.layer} tokens"  # kept beside the maps, forgotten with them (new image, new weights)
        if key not in self._memo:
            try:
                self._memo[key] = stats._np(self.probe.extra_tokens(self._x, self.layer, preprocess=False)[0].float())
            except Exception:
                return []
        names = ["class token"] if r.extra == 1 else [f"token {i}" for i in range(r.extra)]
        return [(n, float(v)) for n, v in zip(names, self._memo[key][:, c])]

    def _render_selection(self) -> None:
        if self._busy or not self._is_maps():
            if self._acts is not None and not self._is_maps() and not self._busy:
                self.units_view.select(int(self.channel))
            return
        c = int(self.channel)
        m = self._acts[c]
        s = stats.describe(m)
        lo, hi = (self._range if self.norm == "layer" else (s.min, s.max))
        self.detail.show(c, m, self.channel_unit(), self.cmap, lo, hi, self._acts.shape[0], self._aside(c))
        # outline the selected tile, if it is on this page
        plan = self._plan
        pos = np.flatnonzero(self._visible == c)
        if plan is None or not pos.size or plan.page_of(int(pos[0])) != self.page or self._grid_rgb is None:
            self.grid_view.hide_outline()
            return
        i = int(pos[0]) - plan.page(self.page).start
        th, tw = plan.tile_hw
        y0, x0 = render.tile_origin(i, plan.cols(self.page), th, tw, plan.pad)
        self.grid_view.outline(y0, x0, th, tw)

    def _show_filters(self) -> None:
        self.filters.show(self.probe)

    # --- static --------------------------------------------------------------------------------
    def figure(self, **kwargs):
        """A matplotlib figure of the input, the current page of the grid and the large view."""
        return static_figure(self)

    def mosaic(self, layer: str | None = None, channels: int | None = None, cols: int | None = None,
               cmap: str | None = None):
        """A matplotlib figure of every channel of ``layer`` (default: the panel's) for the panel's image, like
        seed 000's mosaics (8x8 tiles for 64 channels, 8x16 for 128, ...); ``channels``: only the first ones,
        ``cols`` tiles per row (``fm.mosaic("layer1.0.conv1", channels=16, cols=4)``), ``cmap``: another colormap."""
        return mosaic.figure(self, layer, channels, cols, cmap)

    def save_layers(self, folder, layers=None, dpi: int = 800, fmt: str = "png", **kwargs) -> list[str]:
        """Write one :meth:`mosaic` per layer (default: every conv layer with maps) into ``folder`` at ``dpi``;
        returns the paths, in layer order."""
        return mosaic.save_layers(self, folder, layers, dpi, fmt, **kwargs)
