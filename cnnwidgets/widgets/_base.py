"""What every panel shares: save/figure, error display, layer controls, run controls.

Only ipywidgets APIs present in both 7.x (Colab) and 8.x are used; differences are wrapped here.
"""
from __future__ import annotations

import html
import traceback
from typing import Any, Callable, Iterator

import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..runner import Runner

IPYW8 = int(W.__version__.split(".")[0]) >= 8


class Panel(W.VBox):
    """Base of every cnnwidgets panel: an ipywidgets VBox that can also draw itself statically.

    Subclasses implement :meth:`figure` (a matplotlib figure of what the panel shows); :meth:`save`
    writes it as a PNG, for graded notebooks exported to HTML/PDF and for papers.
    """

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


def layer_label(probe, slider: W.SelectionSlider, name: str) -> str:
    """HTML under a layer slider: ``layer 7 of 49: name · type · output 144×56×56`` (the readout is too narrow)."""
    layer = probe.layer(name)
    names = [o[1] for o in slider.options]
    where = f"layer {names.index(layer.name) + 1} of {len(names)}" if layer.name in names else "layer"
    return (f"<div style='line-height:1.35;padding:2px 0'><span style='color:#666'>{where}:</span> "
            f"<b>{html.escape(layer.name)}</b> · {html.escape(layer.type)} · output {'×'.join(map(str, layer.shape))}</div>")


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
    """(name, content) of a FileUpload's files under ipywidgets 7 (dict) and 8 (tuple)."""
    v = upload.value
    out = []
    if isinstance(v, dict):  # ipywidgets 7
        for name, f in v.items():
            out.append((name, bytes(f["content"])))
    else:
        for f in v:
            out.append((f.get("name", "upload"), bytes(f["content"])))
    return out


def clear_upload(upload: W.FileUpload) -> None:
    try:
        upload.value = () if IPYW8 else {}
        if not IPYW8:
            upload._counter = 0
    except Exception:
        pass


class RunControls(W.HBox):
    """Start / pause / stop buttons and a progress bar that drive one :class:`Runner` at a time."""

    state = T.Unicode("idle").tag(sync=False)

    def __init__(self, make_job: Callable[[], Iterator], on_frame: Callable[[Any, bool], None], *, total: Callable[[], int | None] = lambda: None,
                 fps: float = 15.0, message: Message | None = None, mode: str = "auto", on_start: Callable[[], None] | None = None):
        self.make_job = make_job
        self.on_frame = on_frame
        self.total = total
        self.fps = fps
        self.mode = mode
        self.on_start = on_start
        self.message = message or Message()
        self.start_button = W.Button(description="Start", icon="play", button_style="success", layout=W.Layout(width="90px"))
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True, layout=W.Layout(width="90px"))
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True, layout=W.Layout(width="90px"))
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="220px"))
        self.progress_label = W.Label("")
        self.runner: Runner | None = None
        self.start_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__([self.start_button, self.pause_button, self.stop_button, self.progress, self.progress_label])

    def start(self) -> Runner | None:
        if self.runner is not None and self.runner.running:
            return self.runner
        self.message.clear()
        try:
            if self.on_start:
                self.on_start()
            job = self.make_job()
        except Exception as e:  # bad settings: say so in the panel
            self.message.exception(e)
            return None
        total = self.total()
        self.progress.max = max(1, total or 1)
        self.progress.value = 0
        self.runner = Runner(job, self.on_frame, fps=self.fps, total=total, on_progress=self._progress,
                             on_state=self._state, on_error=lambda e, text: self.message.error(text), mode=self.mode)
        return self.runner.start()

    def toggle_pause(self) -> None:
        r = self.runner
        if r is None:
            return
        if r.state == "paused":
            r.resume()
        else:
            r.pause()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    def join(self, timeout: float | None = None) -> bool:
        return self.runner.join(timeout) if self.runner is not None else True

    def _progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.max = max(1, total)
            self.progress.value = min(int(done), total)
            self.progress_label.value = f"{int(done)} / {total}"
        else:
            self.progress_label.value = str(done)

    def _state(self, state: str) -> None:
        self.state = state
        running = state in ("running", "paused")
        self.start_button.disabled = running
        self.pause_button.disabled = not running
        self.stop_button.disabled = not running
        self.pause_button.description = "Resume" if state == "paused" else "Pause"
        self.pause_button.icon = "play" if state == "paused" else "pause"
        if state in ("done", "stopped"):
            self.message.info(f"{state} after {self.runner.items if self.runner else 0} steps")
