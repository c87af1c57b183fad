"""The grid tabs (all methods, compare models, sanity check): one job slot each, maps drawn as tiles.

Tiles are kept and updated in place from frame to frame (only a tile whose map changed is drawn again);
the ones a smaller grid no longer needs are closed, so widgets do not pile up while jobs stream."""
from __future__ import annotations

import html

import ipywidgets as W

from ... import render
from ...analyses import attribution as A
from ...runner import Step
from .._base import reachable_widgets
from .display import DisplayControls, title
from .slot import Slot

SIDE = 180


def close_all(widget) -> None:
    """Close ``widget`` and every widget it holds (layouts and styles too)."""
    for w in reachable_widgets(widget):
        w.close()


class Tile:
    def __init__(self):
        self.head = W.HTML(layout=W.Layout(width=f"{SIDE}px"))
        self.image = W.Image(format="png", layout=W.Layout(width=f"{SIDE}px", height=f"{SIDE}px"))
        self.box = W.VBox([self.head, self.image], layout=W.Layout(margin="0 6px 6px 0"))
        self._drawn = None

    def set(self, a: A.Attribution, head: str, display: DisplayControls) -> None:
        if self.head.value != head:
            self.head.value = head
        key = (id(a), a.done, display.sign.value, display.colormap(), display.clip.value, display.opacity.value)
        if key != self._drawn:
            self.image.value = render.encode(display.render(a, SIDE)[0], "png")
            self._drawn = key


class TileGrid:
    """A wrapping row of tiles (``box``); :meth:`show` draws ``[(Attribution, heading HTML)]``."""

    def __init__(self, display: DisplayControls):
        self.display = display
        self.box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.tiles: list[Tile] = []

    def show(self, items) -> None:
        while len(self.tiles) < len(items):
            self.tiles.append(Tile())
        for t, (a, head) in zip(self.tiles, items):
            t.set(a, head, self.display)
        gone = self.tiles[len(items):]
        del self.tiles[len(items):]
        kids = tuple(t.box for t in self.tiles)
        if tuple(self.box.children) != kids:
            self.box.children = kids
        for t in gone:
            close_all(t.box)


class GridTab:
    """One tab: an explanation, a job slot (Start / Pause / Stop, progress), a heading and a grid of maps.
    Subclasses give :meth:`job` (a generator of Steps), :meth:`items` and :meth:`heading`."""

    intro = ""
    unit = "step"

    def __init__(self, panel, display: DisplayControls, message, extra=()):
        self.panel = panel
        self.display = display
        self.heading_html = W.HTML()
        self.note = W.HTML()
        self.grid = TileGrid(display)
        self.value = None
        self.weights = None  # the weights the results come from
        self.run = Slot(self._make, self._frame, total=self.total, message=message, mode=panel.mode,
                               unit=self.unit, panel=panel, fps=4, stale=lambda: [self.grid.box, self.heading_html])
        self.box = W.VBox([W.HTML(self.intro_html()), W.HBox([*extra, self.run]), self.note, self.heading_html,
                           self.grid.box])

    def intro_html(self) -> str:
        return self.intro

    def total(self):
        return None

    def _make(self):
        self.panel.check_weights()
        job = self.job()
        self.weights = self.panel.probe.weights_version()
        self.note.value = ""
        return job

    def _frame(self, item: Step, final: bool) -> None:
        self.value = item.value
        if not final and item.info and item.info.get("status"):
            self.run.message.info(item.info["status"])
        self.draw()

    def draw(self) -> None:
        items = self.items() if self.value else []
        self.heading_html.value = (self.heading() + self.display.key()) if items else ""
        self.grid.show(items)

    def clear(self) -> None:
        self.value = None
        self.note.value = ""
        self.draw()

    def outdated(self) -> None:
        """The model's weights changed since these maps were computed."""
        if self.value:
            self.note.value = ("<span class='cnnw-stale-note'>The model's weights changed since these maps were "
                               "computed: press Start to compute them again.</span>")

    def job(self):  # pragma: no cover - each tab overrides it
        raise NotImplementedError

    def items(self) -> list:  # pragma: no cover
        raise NotImplementedError

    def heading(self) -> str:  # pragma: no cover
        raise NotImplementedError


def _sub(a: A.Attribution) -> str:
    return f"{html.escape(a.progress)}…" if a.partial else f"{a.seconds:.1f} s"


class AllMethods(GridTab):
    unit = "method"

    def intro_html(self) -> str:
        return (f"All {len(A.METHODS)} methods on this image and class, each with the options set above; "
                "press Start.")

    def total(self):
        return len(A.METHODS)

    def job(self):
        p = self.panel
        return A.all_methods(p.probe, p.image, p.target, stop=self.run.event(), **{m: p.options(m) for m in A.METHODS})

    def items(self):
        return [(a, title(a.kind.short or a.label, _sub(a))) for a in self.value.values()]

    def heading(self) -> str:
        a = next(iter(self.value.values()))
        return (f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(a.model)}</b> · explaining "
                f"<b style='color:#1565c0'>{html.escape(a.target_name)}</b> ({a.target})</div>")


class CompareModels(GridTab):
    unit = "model"

    def intro_html(self) -> str:
        hint = ("" if len(self.panel.compare_probes) > 1 else
                " Pass <code>compare=[cw.Probe(other_model)]</code> to add models (VGG vs ResNet, as in the homework).")
        return "The same image, method and class on each model." + hint

    def total(self):
        return len(self.panel.compare_probes)

    def job(self):
        p = self.panel
        method, target, probes = p.method, p.target, list(p.compare_probes)
        layer_opts = {o.name for o in A.get(method).options if o.kind == "layer"}
        jobs, stop = [], self.run.event()
        for q in probes:  # every model's options checked before any work
            same = q.num_classes == p.probe.num_classes
            opts = {k: v for k, v in p.options(method).items() if q is p.probe or k not in layer_opts}
            jobs.append(A.attribute_steps(q, p.image, method, target if same else None, stop=stop, **opts))

        def run():
            out: list[A.Attribution] = []
            for i, steps in enumerate(jobs):
                last = None
                for s in steps:
                    last = s.value if s.value is not None else last
                    yield Step(i + (0 if last is None or last.partial else 1), len(jobs),
                               out + ([last] if last is not None else []), s.info)
                if last is None or last.partial:  # stopped
                    return
                out.append(last)
        return run()

    def items(self):
        return [(a, title(a.model, f"{html.escape(a.target_name)} ({a.target}), p = {a.prob:.0%} · {_sub(a)}"))
                for a in self.value]

    def heading(self) -> str:
        a = self.value[0]
        return f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(a.label)}</b> on each model</div>"


class SanityCheck(GridTab):
    unit = "map"
    intro = ("<b>Sanity check</b> (Adebayo et al. 2018): the model's weights are re-initialised from the top "
             "(classifier) down, one group more at each step, on a copy of the model. A good explanation "
             "<i>changes</i> when the model is destroyed: ρ (Spearman rank correlation with the trained "
             "model's |map|) should fall towards 0. A map that stays the same is explaining the image, not "
             "the model.")

    def __init__(self, panel, display, message):
        self.levels = W.IntSlider(5, min=2, max=12, description="randomisation steps", style={"description_width": "initial"})
        super().__init__(panel, display, message, extra=[self.levels])

    def total(self):
        return self.levels.value + 1

    def job(self):
        p = self.panel
        steps = A.sanity_check(p.probe, p.image, p.method, p.target, steps=self.levels.value, progress=True,
                               options=p.options(), stop=self.run.event())

        def run():  # cumulative, so a frame the runner drops loses no tile
            done: list[Step] = []
            for s in steps:
                if s.info["final"]:
                    done.append(s)
                    yield Step(s.step + 1, s.total + 1, list(done), s.info)
                elif s.value is not None:
                    yield Step(s.step, s.total + 1, done + [s], s.info)
        return run()

    def items(self):
        tiles = []
        for s in self.value:
            label = s.info["label"]
            short = html.escape(label if len(label) < 40 else "…" + label[-38:])
            if s.info["final"]:
                tiles.append((s.value, title(f"ρ = {s.info['spearman']:.2f}", f"{short}<br>SSIM {s.info['ssim']:.2f}")))
            else:
                tiles.append((s.value, title("ρ = …", f"{short}<br>{html.escape(s.value.progress)}…")))
        return tiles

    def heading(self) -> str:
        a = self.value[0].value
        return (f"<div style='font-size:14px;margin:4px 0'><b>{html.escape(a.label)}</b> for "
                f"<b style='color:#1565c0'>{html.escape(a.target_name)}</b> ({a.target}) as the weights are "
                "randomised, left to right</div>")

    @property
    def steps(self) -> list[Step]:
        """The finished steps (trained model first)."""
        return [s for s in (self.value or []) if s.info["final"]]
