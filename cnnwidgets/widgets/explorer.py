"""Explorer: every panel in tabs, following one selected layer and channel."""
from __future__ import annotations

from importlib import import_module

import ipywidgets as W
import traitlets as T

from ..imagesets import image_set
from ._base import Message, Panel, dispose
from .imagegrid import ImageGrid

#: tab title -> (module, class); built when the tab is first opened, so the Explorer starts fast
PANELS = {
    "Feature maps": ("cnnwidgets.widgets.featuremaps", "FeatureMaps"),
    "Histograms": ("cnnwidgets.widgets.histogram", "Histogram"),
    "CKA": ("cnnwidgets.widgets.cka_heatmap", "CKAHeatmap"),
    "Dream": ("cnnwidgets.widgets.dream", "Dream"),
    "Saliency": ("cnnwidgets.widgets.saliency", "Saliency"),
    "Embedding": ("cnnwidgets.widgets.embedding", "Embedding"),
}
#: which constructors take the current image
TAKES_IMAGE = {"FeatureMaps", "Histogram", "Saliency"}
LINKED = ("layer", "channel")
IMAGES = "Images"  #: the first tab when the Explorer is given images=: a grid of them; a click shows that image everywhere
TOP = "Top images"  #: the tab when the Explorer is given index=: a channel's top dataset images beside its dream


class Explorer(Panel):
    """All panels for one model, linked: pick a layer or channel in one tab and the others follow.

    >>> ex = cw.Explorer(probe, cw.sample_image("chelsea"))
    >>> ex.layer = probe.layers[10].name      # every built panel moves to that layer

    The Explorer owns the shared ``layer`` and ``channel`` traits; each panel's traits of the same
    name are linked to them with ``traitlets.link`` when the panel is built (no panel reaches
    into another). A click on a CKA cell selects its first layer.

    ``images=`` (anything :func:`cnnwidgets.image_set` takes: a folder, a Dataset, a DataLoader...) adds an
    "Images" tab (:class:`~cnnwidgets.widgets.imagegrid.ImageGrid`) whose selected image goes to every panel
    that shows one image (their ``set_image``), and is the Embedding's image set.

    ``index=`` (a :mod:`cnnwidgets.index` of that set) adds a "Top images" tab
    (:class:`~cnnwidgets.widgets.topimages.TopImages`): the selected channel's top images of the whole set, with
    the crop its strongest unit sees, beside the channel's dream.
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)

    def __init__(self, probe, image=None, panels=None, *, images=None, index=None):
        self.probe = probe
        self.index = index
        self.image = image
        self.images = None if images is None else image_set(images)
        names = list(panels) if panels is not None else list(PANELS)
        unknown = [n for n in names if n not in PANELS and n not in (IMAGES, TOP)]
        if unknown:
            raise ValueError(f"Unknown panels {unknown}; choose from {list(PANELS)}.")
        if self.images is not None and IMAGES not in names:
            names.insert(0, IMAGES)
        if index is not None and TOP not in names:
            names.insert(names.index(IMAGES) + 1 if IMAGES in names else 0, TOP)
        self.names = names
        self.panels: dict[str, W.Widget] = {}
        self._links: list = []
        self.message = Message()
        self.status = W.HTML()
        convs = probe.require_layers("The Explorer")
        self.layer = convs[len(convs) // 2].name
        if index is not None and self.layer not in index.layers:  # start on an indexed layer: its top images show
            self.layer = index.layers[len(index.layers) // 2]
        self.tabs = W.Tab(children=[W.VBox([W.HTML("<i>loading…</i>")]) for _ in names])
        for i, n in enumerate(names):
            self.tabs.set_title(i, n)
        self.tabs.observe(self._on_tab, "selected_index")
        header = W.HTML(
            f"<b>cnnwidgets Explorer</b> — <code>{probe.name}</code> on {probe.device}, "
            f"{len(probe.layers)} conv layers. The tabs follow one selected layer and channel."
        )
        super().__init__([header, self.status, self.message, self.tabs])
        self._on_close.append(lambda: [link.unlink() for link in self._links])
        self.tabs.selected_index = 0
        self._on_tab({"new": 0})

    def panel(self, name: str):
        """The panel of tab ``name``, built (and linked) on first use."""
        if name == IMAGES and name not in self.panels:
            if self.images is None:
                raise ValueError("The Images tab shows the set given as Explorer(probe, images=...).")
            grid = ImageGrid(self.images, self.probe)
            grid.selection.value = "<i style='color:#666'>click an image to show it in the other tabs</i>"
            grid.observe(lambda ch: self._show_image(ch["new"]), "image")
            self.panels[name] = grid
            self._place(name)
        if name == TOP and name not in self.panels:
            if self.index is None:
                raise ValueError("The Top images tab shows an index given as Explorer(probe, images, index=...).")
            from .topimages import TopImages

            layer = self.layer if self.layer in self.index.layers else None
            self.panels[name] = panel = TopImages(self.index, layer, images=self.images, probe=self.probe, dream=True)
            self._link(panel)
            self._place(name)
        if name not in self.panels:
            module, cls_name = PANELS[name]
            cls = getattr(import_module(module), cls_name)
            kwargs = {"image": self.image} if cls_name in TAKES_IMAGE and self.image is not None else {}
            if cls_name == "Embedding" and self.images is not None:
                kwargs = {"images": self.images}
            panel = cls(self.probe, **kwargs)
            self.panels[name] = panel
            self._link(panel)
            self._place(name)
        return self.panels[name]

    def _place(self, name: str) -> None:
        """Put the built panel in its tab; the "loading…" placeholder it replaces is closed."""
        i = self.names.index(name)
        children = list(self.tabs.children)
        old, children[i] = children[i], self.panels[name]
        self.tabs.children = children
        if old is not self.panels[name]:
            dispose(old)

    def _link(self, panel) -> None:
        for trait in LINKED:
            if panel.has_trait(trait):
                try:
                    setattr(panel, trait, getattr(self, trait))
                except Exception:  # e.g. a layer this panel does not show: keep its own
                    setattr(self, trait, getattr(panel, trait))
                self._links.append(T.link((self, trait), (panel, trait)))
        if panel.has_trait("layer_a"):  # a CKA cell click selects its first layer
            panel.observe(lambda ch: self._follow_cka(ch["new"]), "layer_a")

    def _show_image(self, image) -> None:
        """The image picked in the Images tab: shown by every built panel that shows one image, and by later ones."""
        if image is None:
            return
        self.image = image
        for panel in self.panels.values():
            if hasattr(panel, "set_image"):
                panel.set_image(image)

    def _follow_cka(self, name) -> None:
        if name and name in self.probe.all_layers:
            self.layer = name

    def _on_tab(self, change) -> None:
        i = change["new"]
        if i is None:
            return
        name = self.names[i]
        try:
            self.panel(name)
            self.message.clear()
        except Exception as e:
            self.message.exception(e)

    @T.observe("layer", "channel")
    def _status(self, change) -> None:
        if self.layer:
            l = self.probe.layer(self.layer)
            self.status.value = f"selected: <b>{l.label}</b>, channel <b>{self.channel}</b>"

    def figure(self, **kwargs):
        """The figure of the panel in the open tab."""
        return self.panel(self.names[self.tabs.selected_index or 0]).figure(**kwargs)
