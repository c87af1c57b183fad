"""What every panel shares: save/figure, error display, layer controls, run controls.

Only ipywidgets APIs present in both 7.x (Colab) and 8.x are used; differences are wrapped here.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import time
import traceback
import uuid
import weakref
from typing import Any, Callable, Iterator

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..runner import Runner

IPYW8 = int(W.__version__.split(".")[0]) >= 8

#: a vertical axis on the left in bqplot 0.12 (an ``orientation`` trait) and 0.13 (``side`` alone; orientation follows)
VERTICAL = {"side": "left", **({"orientation": "vertical"} if "orientation" in bq.Axis.class_trait_names() else {})}


#: styles every panel carries: a result about to be replaced is dimmed (never shown as current); a panel's static
#: view (for exported notebooks) is hidden wherever the live panel is drawn
CSS = ("<style>.cnnw-stale{opacity:.35;filter:grayscale(70%);transition:opacity .15s}"
       ".cnnw-stale-note{color:#8a5a00}.cnnw-static{display:none}</style>")

STATIC_DPI = 80  #: resolution of the static view kept in a displayed panel's output

_shown: "weakref.WeakSet[Panel]" = weakref.WeakSet()  # panels displayed in this kernel, whose static view follows them
_hooked = False


def _refresh_static(*_) -> None:
    """After each cell: the static view of every displayed panel whose view changed since it was drawn."""
    for panel in list(_shown):
        try:
            panel.refresh_static()
        except Exception:  # a panel that cannot draw itself must not break the user's cell
            traceback.print_exc()


def _follow(panel: "Panel") -> None:
    global _hooked
    _shown.add(panel)
    if not _hooked:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            ip.events.register("post_run_cell", _refresh_static)
            _hooked = True


class Panel(W.VBox):
    """Base of every cnnwidgets panel: an ipywidgets VBox that can also draw itself statically.

    Subclasses implement :meth:`figure` (a matplotlib figure of what the panel shows); :meth:`save`
    writes it as a PNG, for graded notebooks exported to HTML/PDF and for papers. Long jobs run in the
    panel's :class:`RunControls`; :meth:`close` stops them and closes every widget the panel made.
    A job that should start on its own (:meth:`autostart`) starts at once in a background thread, or, in
    the foreground (Colab), once the panel is on screen: the panel shows first, then computes.
    """

    def __init__(self, children=(), **kwargs):
        for name in ("_jobs", "_on_close", "_pending"):  # RunControls made before this call register already
            if name not in self.__dict__:
                setattr(self, name, [])
        if "_weights_seen" not in self.__dict__:
            self._weights_seen = None
        super().__init__([*children, W.HTML(CSS, layout=W.Layout(height="0px", margin="0"))], **kwargs)

    def figure(self, **kwargs):  # pragma: no cover - each panel overrides it
        raise NotImplementedError

    def save(self, path, dpi: int = 150, **kwargs) -> str:
        """Write what the panel shows to ``path`` (PNG, or any format matplotlib knows)."""
        import matplotlib.pyplot as plt

        fig = self.figure(**kwargs)
        try:
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(fig)
        return str(path)

    def show_static(self, **kwargs):
        """Display the matplotlib figure inline (survives export to HTML/PDF without a kernel)."""
        from IPython.display import display
        import matplotlib.pyplot as plt

        fig = self.figure(**kwargs)
        display(fig)
        plt.close(fig)

    # --- jobs ----------------------------------------------------------------------------------
    def autostart(self, controls: "RunControls") -> None:
        """Start ``controls``' job now in a background thread, or (foreground mode) when the panel is displayed."""
        if controls.mode == "thread":
            controls.start()
        elif controls not in self._pending:
            self._pending.append(controls)

    def start_pending(self) -> None:
        """Start the foreground jobs that wait for the panel to be displayed (``join()`` and tests call this)."""
        pending, self._pending = self._pending, []
        for c in pending:
            c.start()

    def join(self, timeout: float | None = None) -> bool:
        """Start what waits for the panel to be displayed, and wait for the panel's jobs to end (for scripts and
        tests: a panel never displayed computes here). True when all have ended."""
        self.start_pending()
        return all([c.join(timeout) for c in self._jobs])

    def _ipython_display_(self, **kwargs):
        from IPython.display import display

        if hasattr(W.Widget, "_repr_mimebundle_"):  # ipywidgets 8
            data = self._repr_mimebundle_(**kwargs)
        else:  # ipywidgets 7
            data = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                                   "model_id": self.model_id}}
        data["text/plain"] = f"{type(self).__name__} panel (live when the notebook runs; its last view is below)"
        display(data, raw=True)
        if not IPYW8:
            self._handle_displayed(**kwargs)
        if "_static_id" not in self.__dict__:
            self._static_id = uuid.uuid4().hex
        self._static_seen = None  # drawn when the cell ends (the live panel shows first)
        text = f"{type(self).__name__}: its image is drawn when the cell ends"
        display({"text/html": f"<div class='cnnw-static' style='color:#666'>{text}</div>", "text/plain": text}, raw=True,
                display_id=self._static_id)
        _follow(self)
        self.check_weights()
        self.start_pending()  # on screen now: compute (foreground jobs keep the cell busy meanwhile)

    # --- the static view, for exported notebooks ---------------------------------------------------
    def view_fingerprint(self) -> str:
        """A digest of what the panel shows now (its widgets' values, images, marks' data), to tell a changed view."""
        h = hashlib.blake2b(digest_size=16)
        for w in reachable_widgets(self):
            for k in ("value", "color", "x", "y", "selected_index", "visible", "title", "description", "disabled"):
                if k in w.keys:
                    v = getattr(w, k)
                    h.update(v.tobytes() if isinstance(v, np.ndarray) else v if isinstance(v, bytes) else repr(v).encode())
        return h.hexdigest()

    def static_png(self, dpi: int = STATIC_DPI) -> bytes:
        """What :meth:`figure` draws, as PNG bytes."""
        import matplotlib.pyplot as plt

        fig = self.figure()
        try:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(fig)
        return buf.getvalue()

    def static_bundle(self) -> dict:
        """The panel's static view as display data: an ``<img>`` (HTML, hidden wherever the live panel is drawn,
        since the panel's CSS hides ``.cnnw-static``) and the PNG itself (PDF export); or a line saying why not yet."""
        self._static_seen = self.view_fingerprint()
        name = type(self).__name__
        try:
            png = self.static_png()
        except Exception as e:  # nothing computed yet, for instance
            text = f"{name}: {str(e) or type(e).__name__}"
            return {"text/html": f"<div class='cnnw-static' style='color:#666'>{html.escape(text)}</div>", "text/plain": text}
        src = base64.b64encode(png).decode()
        return {"text/html": f"<div class='cnnw-static'><img src='data:image/png;base64,{src}' alt='{name}: its last view'></div>",
                "image/png": src, "text/plain": f"{name}: its last view (an image)"}

    def refresh_static(self) -> bool:
        """Redraw the static view of the displayed panel if its view changed (after every cell, on its own).
        True when it was redrawn."""
        if "_static_id" not in self.__dict__ or self.comm is None or self._static_seen == self.view_fingerprint():
            return False
        from IPython.display import update_display

        update_display(self.static_bundle(), raw=True, display_id=self._static_id)
        return True

    # --- live weights ----------------------------------------------------------------------------
    def check_weights(self) -> bool:
        """Whether the model's weights changed since the panel last computed from them (:meth:`mark_weights`);
        if so, :meth:`on_weights_changed` runs (recompute, or say the results are outdated)."""
        probe = getattr(self, "probe", None)
        if probe is None or self._weights_seen is None:
            return False
        if probe.weights_version() == self._weights_seen:
            return False
        self._weights_seen = probe.weights_version()
        self.on_weights_changed()
        return True

    def mark_weights(self) -> None:
        """Remember the weights the panel's results come from."""
        probe = getattr(self, "probe", None)
        if probe is not None:
            self._weights_seen = probe.weights_version()

    def on_weights_changed(self) -> None:  # panels override: recompute, or mark results outdated
        pass

    # --- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the panel's jobs, undo its observers and links, and close every widget it made."""
        for c in list(self.__dict__.get("_jobs", ())):  # (a panel whose constructor raised has none)
            c.stop(wait=10)
        self._pending = []
        for fn in self.__dict__.get("_on_close", ()):
            try:
                fn()
            except Exception:  # closing must not fail half way
                traceback.print_exc()
        self._on_close = []
        _shown.discard(self)
        dispose(*[w for w in reachable_widgets(self) if w is not self])
        super().close()


def dispose(*widgets) -> None:
    """Close widgets that are being replaced, with everything they hold (their layout and style, the children of a
    box): ``Widget.close()`` alone leaves those in ipywidgets' registry for good."""
    for root in widgets:
        if root is None:
            continue
        for w in reachable_widgets(root):
            w.close()  # a panel among them stops its jobs too


def reachable_widgets(root) -> list:
    """Every widget ``root`` holds: its children and the widgets in its traits (bqplot marks, axes, scales,
    images), and those in the attributes of panels and of cnnwidgets' helper objects (controls not on screen)."""
    seen: dict[int, W.Widget] = {}
    stack = [root]
    while stack:
        o = stack.pop()
        if isinstance(o, W.Widget):
            if id(o) in seen or (o.comm is None and o is not root):  # closed already
                continue
            seen[id(o)] = o
            stack.extend(getattr(o, k, None) for k in o.keys)
            if isinstance(o, Panel) or type(o).__module__.startswith("cnnwidgets."):
                stack.extend(vars(o).values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif type(o).__module__.startswith("cnnwidgets.widgets"):
            stack.extend(vars(o).values())
    return list(seen.values())


class Message(W.HTML):
    """A one-line status / error area."""

    def info(self, text: str) -> None:
        self.value = f"<span style='color:#444'>{html.escape(text)}</span>"

    def error(self, text: str) -> None:
        self.value = f"<span style='color:#b00020'><b>Error:</b> {html.escape(text)}</span>"

    def warn(self, text: str) -> None:
        self.value = f"<span style='color:#8a5a00'>{html.escape(text)}</span>"

    def clear(self) -> None:
        self.value = ""

    def exception(self, e: BaseException) -> None:
        self.error("".join(traceback.format_exception_only(type(e), e)).strip())


def nice_ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
    """Round tick values inside ``[lo, hi]``: multiples of 1, 2 or 5 times a power of ten, the step nearest
    to ``(hi - lo) / count`` (d3's rule; bqplot's ``num_ticks`` spaces them evenly from the exact ends)."""
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.zeros(0)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        return np.array([lo])
    raw = (hi - lo) / max(1, count)
    mag = 10.0 ** np.floor(np.log10(raw))
    err = raw / mag
    step = mag * (10 if err >= 50 ** 0.5 else 5 if err >= 10 ** 0.5 else 2 if err >= 2 ** 0.5 else 1)
    ticks = np.arange(np.ceil(lo / step), np.floor(hi / step) + 1) * step
    return np.round(ticks, 12) + 0.0  # no -0.0


def image_widget(rgb: np.ndarray | None = None, fmt: str = "png", width: str | None = None) -> W.Image:
    img = W.Image(format=fmt)
    if width:
        img.layout.width = width
    if rgb is not None:
        img.value = render.encode(rgb, fmt)
    return img


def set_image(widget: W.Image, rgb: np.ndarray, fmt: str = "png", quality: int = 85) -> None:
    widget.format = "jpeg" if fmt in ("jpg", "jpeg") else "png"
    widget.value = render.encode(rgb, fmt, quality)


def layer_slider(probe, layers=None, value=None, description: str = "layer") -> W.SelectionSlider:
    """A slider over layers whose readout is ``name · type · shape``."""
    layers = list(layers if layers is not None else probe.layers)
    if not layers:
        raise ValueError(f"{probe.name} has no layers to show.")
    names = [l.name for l in layers]
    return W.SelectionSlider(options=[(l.label, l.name) for l in layers], value=value if value in names else names[0],
                             description=description, continuous_update=True, layout=W.Layout(width="98%"),
                             style={"description_width": "initial"})


def layer_position(probe, name: str) -> str:
    """Where a layer is, counted the same way in every panel: ``conv layer 7 of 49``, or for another module the
    conv layer it comes after (``BatchNorm2d after conv layer 7 of 49``)."""
    layer = probe.layer(name)
    convs = probe.layers.names
    word = "layer" if any(l.reshape is not None for l in probe.layers) else "conv layer"  # a transformer: its blocks
    if layer.name in convs:
        return f"{word} {convs.index(layer.name) + 1} of {len(convs)}"
    before = [i for i, l in enumerate(probe.layers) if l.order < layer.order]
    if not convs:
        return layer.type
    if not before:
        return f"{layer.type} before {word} 1 of {len(convs)}"
    return f"{layer.type} after {word} {before[-1] + 1} of {len(convs)}"


def layer_label(probe, slider: W.SelectionSlider, name: str) -> str:
    """HTML under a layer slider: ``conv layer 7 of 49: name · type · output 144×56×56`` (the readout is too narrow)."""
    layer = probe.layer(name)
    return (f"<div style='line-height:1.35;padding:2px 0'><span style='color:#666'>{layer_position(probe, name)}:</span> "
            f"<b>{html.escape(layer.name)}</b> · {html.escape(layer.type)} · output {'×'.join(map(str, layer.shape))}"
            + (f" <span style='color:#666'>({html.escape(layer.reshape.describe())})</span>" if layer.reshape is not None
               else "") + "</div>")


class LayerSlider:
    """A panel's layer slider (``.slider``) and the caption under it (``.caption``: ``layer 7 of 49: name ·
    type · output``), kept in step with the panel's ``layer`` trait both ways: a user's move calls
    ``on_move(name)``; :meth:`show` moves the slider to any layer — added to the options when it is not one
    of ``layers`` (a linked panel chose it) — without answering back."""

    def __init__(self, probe, layers=None, value=None, on_move=None, description: str = "layer"):
        self.probe = probe
        self.base = list(layers if layers is not None else probe.layers)
        self.slider = layer_slider(probe, self.base, value, description)
        self.slider.readout = False  # a long "name · type · shape" does not fit beside the slider: the caption shows it
        self.caption = W.HTML()
        self._on_move = on_move
        self._quiet = False
        self.slider.observe(self._moved, "value")
        self._caption()

    @property
    def value(self) -> str:
        return self.slider.value

    def _caption(self) -> None:
        self.caption.value = layer_label(self.probe, self.slider, self.slider.value)

    def _moved(self, change) -> None:
        self._caption()
        if not self._quiet and change["new"] is not None and self._on_move is not None:
            self._on_move(change["new"])

    def options_for(self, name: str) -> list[tuple[str, str]]:
        """``(label, name)`` of the base layers plus ``name`` (any module), in forward order."""
        layers = list(self.base)
        if name and name not in [l.name for l in layers] and name in self.probe.all_layers:
            layers.append(self.probe.all_layers[name])
            layers.sort(key=lambda l: l.order)
        return [(l.label, l.name) for l in layers]

    def show(self, name: str) -> None:
        """Move to layer ``name`` (adding it to the options if needed) without calling ``on_move``."""
        self._quiet = True  # changing the options may change the value: that is not a user's move
        try:
            opts = self.options_for(name)
            if [o[1] for o in opts] != [o[1] for o in self.slider.options]:
                self.slider.options = opts
            if self.slider.value != name:
                self.slider.value = name
        finally:
            self._quiet = False
        self._caption()


def uploaded_files(upload: W.FileUpload) -> list[tuple[str, bytes]]:
    """(name, content) of a FileUpload's files under ipywidgets 7 (``value``: a dict name -> {metadata, content})
    and 8 (``value``: a tuple of dicts with name and content)."""
    v = upload.value
    if isinstance(v, dict):  # ipywidgets 7
        return [(name, bytes(f["content"])) for name, f in v.items()]
    return [(f.get("name", "upload"), bytes(f["content"])) for f in v]


def clear_upload(upload: W.FileUpload) -> None:
    """Forget a FileUpload's files once they are read, so that the same file uploaded again changes ``value``
    (observers see it) and the bytes are not kept twice.

    ipywidgets 8: ``value`` is an ordinary synced tuple. ipywidgets 7 (Colab's 7.7.1): ``value`` is read-only and
    computed in the kernel from ``metadata`` and ``data`` each time the front end bumps ``_counter``; an upload of
    the same file gives an equal dict, hence no change, unless ``value`` was emptied meanwhile (``set_trait`` sets
    a read-only trait; ``_counter`` is left alone: the front end counts on from its own copy, and setting it here
    would rebuild ``value`` from the old files)."""
    if isinstance(upload.value, dict):  # ipywidgets 7
        with upload.hold_trait_notifications():
            upload.metadata = []
            upload.data = []
        upload.set_trait("value", {})
    else:
        upload.value = ()


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + ('es' if word.endswith(('ch', 'sh', 's', 'x')) else 's')}"


class RunControls(W.HBox):
    """A panel's job slot: a progress bar with what is happening, Stop, and (optionally) Start and Pause, driving
    one :class:`~cnnwidgets.runner.Runner` at a time.

    :meth:`start` runs ``make_job()``; :meth:`run` runs a given job. Starting a job stops the one it replaces
    (its frames are no longer shown). While a job runs, the ``stale`` widgets (the result it will replace) are
    dimmed until its first frame arrives, so an old result is never shown as current. ``panel``: the panel whose
    :meth:`Panel.close` stops this job.
    """

    state = T.Unicode("idle").tag(sync=False)

    def __init__(self, make_job: Callable[[], Iterator] | None = None, on_frame: Callable[[Any, bool], None] | None = None, *,
                 total: Callable[[], int | None] = lambda: None, fps: float = 15.0, message: Message | None = None,
                 mode: str = "auto", on_start: Callable[[], None] | None = None, stale: Callable[[], list] | list = (),
                 start: bool = True, pause: bool = True, unit: str = "step", panel: Panel | None = None):
        from ..runner import default_mode

        self.make_job = make_job
        self.on_frame = on_frame
        self.total = total
        self.fps = fps
        self.mode = default_mode() if mode == "auto" else mode
        self.on_start = on_start
        self.unit = unit
        self._stale = stale
        self.message = message or Message()
        self.start_button = W.Button(description="Start", icon="play", button_style="success", layout=W.Layout(width="90px"))
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True, layout=W.Layout(width="90px"))
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True, layout=W.Layout(width="90px"))
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="220px"))
        self.progress_label = W.HTML("")
        self.runner: Runner | None = None
        self._t0 = 0.0
        self._dimmed: list = []
        self.start_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.stop_button.on_click(lambda _: self.stop())
        buttons = ([self.start_button] if start else []) + ([self.pause_button] if pause else []) + [self.stop_button]
        super().__init__(buttons + [self.progress, self.progress_label], layout=W.Layout(align_items="center"))
        if panel is not None:
            if "_jobs" not in panel.__dict__:
                panel._jobs = []
            panel._jobs.append(self)

    # --- running -----------------------------------------------------------------------------------
    def start(self) -> Runner | None:
        """Run ``make_job()`` (what the Start button does); a job already running is stopped first."""
        self.message.clear()
        try:
            if self.on_start:
                self.on_start()
            job = self.make_job()
        except Exception as e:  # bad settings: say so in the panel
            self.message.exception(e)
            return None
        return self.run(job, self.total())

    def run(self, job, total: int | None = None) -> Runner:
        """Run ``job`` (a generator of Steps) here, stopping the job it replaces."""
        self.stop(wait=5)
        self.progress.max = max(1, total or 1)
        self.progress.value = 0
        self.progress_label.value = ""
        self._t0 = time.perf_counter()
        self._dim(True)
        runner = Runner(job, lambda item, final: self._frame(runner, item, final), fps=self.fps, total=total,
                        on_progress=lambda d, t: self._progress(runner, d, t), on_state=lambda s: self._state(runner, s),
                        on_error=lambda e, text: self._error(runner, text), mode=self.mode)
        self.runner = runner
        return runner.start()

    def _frame(self, runner, item, final) -> None:
        if runner is not self.runner:
            return  # a job this slot has moved on from
        self._dim(False)
        if self.on_frame is not None:
            self.on_frame(item, final)

    def toggle_pause(self) -> None:
        r = self.runner
        if r is None:
            return
        if r.state == "paused":
            r.resume()
        else:
            r.pause()

    def stop(self, wait: float | None = None) -> bool:
        """Stop the running job; with ``wait``, wait up to that many seconds for it to end."""
        return self.runner.stop(wait) if self.runner is not None else True

    def join(self, timeout: float | None = None) -> bool:
        return self.runner.join(timeout) if self.runner is not None else True

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    # --- display ------------------------------------------------------------------------------------
    def _dim(self, on: bool) -> None:
        if on:
            ws = self._stale() if callable(self._stale) else list(self._stale)
            self._dimmed = [w for w in ws if w is not None]
            for w in self._dimmed:
                w.add_class("cnnw-stale")
        else:
            for w in self._dimmed:
                w.remove_class("cnnw-stale")
            self._dimmed = []

    def _progress(self, runner, done: int, total: int | None) -> None:
        if runner is not self.runner:
            return
        secs = time.perf_counter() - self._t0
        if total:
            self.progress.max = max(1, total)
            self.progress.value = min(int(done), total)
            self.progress_label.value = f"{int(done)} / {_plural(int(total), self.unit)} · {secs:.1f} s"
        else:
            self.progress_label.value = f"{_plural(int(done), self.unit)} · {secs:.1f} s"

    def _error(self, runner, text: str) -> None:
        if runner is self.runner:
            self.message.error(text)

    def _state(self, runner, state: str) -> None:
        if runner is not self.runner:
            return
        self.state = state
        running = state in ("running", "paused")
        self.start_button.disabled = running
        self.pause_button.disabled = not running
        self.stop_button.disabled = not running
        self.pause_button.description = "Resume" if state == "paused" else "Pause"
        self.pause_button.icon = "play" if state == "paused" else "pause"
        if state in ("done", "stopped"):
            last = runner.last
            done = int(getattr(last, "step", runner.items) or 0)
            total = getattr(last, "total", None) or runner.total
            secs = time.perf_counter() - self._t0
            of = f"{done} / {_plural(int(total), self.unit)}" if total else _plural(done, self.unit)
            if state == "done":
                self.progress.value = self.progress.max
                self.progress_label.value = f"done · {of} · {secs:.1f} s"
                self.message.info(f"done: {of} in {secs:.1f} s")
            else:
                self.progress_label.value = f"stopped at {of}"
                if self._dimmed:  # stopped before its first frame: the old result stays dimmed, and says so
                    self.message.warn(f"stopped at {of}, before a new result: the dimmed result is the previous one")
                else:
                    self.message.info(f"stopped at {of} after {secs:.1f} s")
