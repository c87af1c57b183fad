"""ImageGrid: a paged grid of a set's thumbnails with their class names; click one to select it."""
from __future__ import annotations

import html
import os
from collections import OrderedDict

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T
from PIL import Image, ImageDraw, ImageFont

from .. import render
from ..images import to_tensor
from ..imagesets import image_set, known_length
from ._base import Message, Panel, dispose

GAP = 6  # pixels between tiles
CAPTION = 20  # height of the caption band under each tile
BACKGROUND = (255, 255, 255)
TILE_BG = (238, 238, 238)  # behind images that do not fill their square
SELECTED = "#ff2d2d"


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """An image into a ``side x side`` square, aspect kept: small images enlarged by whole pixels (crisp),
    large ones scaled down smoothly; centred on a light gray square."""
    h, w = rgb.shape[:2]
    if max(h, w) <= side // 2:
        k = side // max(h, w)
        rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    elif max(h, w) != side:
        s = side / max(h, w)
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))
    h, w = rgb.shape[:2]
    out = np.empty((side, side, 3), np.uint8)
    out[:] = TILE_BG
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


class ImageGrid(Panel):
    """A look at a set of images before any analysis: thumbnails with their class names, page by page.

    >>> grid = cw.ImageGrid("photos/")               # anything cw.image_set takes
    >>> grid.index = 30                               # or click a thumbnail; grid.image is that image
    >>> traitlets.dlink((grid, "image"), (fm, "image"))  # or: grid.observe(lambda c: fm.set_image(c["new"]), "image")

    With a ``probe``, thumbnails show what the model sees (resized, cropped, channels as it takes them).
    A shuffled DataLoader has no fixed order: the grid shows its latest pass (streamed up to the page shown).
    Traits: ``index`` (the selected image's position in the set, -1 for none), ``image`` (that image, as
    the set holds it) and ``page``. The set's description and the files it skipped are shown on top.
    """

    index = T.Int(-1).tag(sync=False)  #: position of the selected image in the set, -1 for none
    image = T.Any(None).tag(sync=False)  #: the selected image (path, PIL image, array or tensor), None for none
    page = T.Int(0).tag(sync=False)  #: the page shown, from 0

    def __init__(self, images, probe=None, *, per_page: int = 24, cols: int = 6, tile: int = 96, labels=None,
                 classes=None):
        if per_page < 1 or cols < 1 or tile < 16:
            raise ValueError(f"per_page and cols must be at least 1 and tile at least 16 px; got {per_page}, {cols}, {tile}.")
        self.images = image_set(images, labels, classes)  #: the ImageSet shown
        self.probe = probe
        self.per_page, self.cols, self.tile = int(per_page), int(cols), int(tile)
        self.message = Message()
        self._font = _font()
        self._tiles: OrderedDict[int, tuple[np.ndarray, str]] = OrderedDict()  # position -> (tile, caption)
        self._page_rgb: np.ndarray | None = None
        self._page_n = 0  # images on the page shown
        self._end: int | None = known_length(self.images)  # None: an IterableDataset, found when a page comes out short

        s = self.images
        note = f"<br><span style='color:#8a5a00'>{html.escape(s.note)}</span>" if s.note else ""
        self.header = W.HTML(f"<div style='line-height:1.4'><b>{html.escape(s.description)}</b>{note}</div>")
        self.prev_button = W.Button(description="◀ prev", layout=W.Layout(width="80px"))
        self.next_button = W.Button(description="next ▶", layout=W.Layout(width="80px"))
        self.page_label = W.HTML()
        self.prev_button.on_click(lambda _: self._turn(-1))
        self.next_button.on_click(lambda _: self._turn(+1))
        self._xs, self._ys = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale(min=0.0, max=1.0)
        self.grid_mark = bq.Image(image=W.Image(format="png"), scales={"x": self._xs, "y": self._ys}, x=[0, 1], y=[0, 1])
        self.grid_mark.on_element_click(self._on_click)
        self._sel = bq.Lines(x=[0], y=[0], scales={"x": self._xs, "y": self._ys}, colors=[SELECTED], stroke_width=3,
                             visible=False)
        self.grid_figure = bq.Figure(marks=[self.grid_mark, self._sel], axes=[], padding_x=0, padding_y=0,
                                     fig_margin=dict(top=2, bottom=2, left=2, right=2))
        if self.grid_figure.has_trait("display_toolbar"):  # bqplot >= 0.13: no pan/zoom buttons over the tiles
            self.grid_figure.display_toolbar = False
        self.selection = W.HTML("<i style='color:#666'>click an image to select it</i>")
        self.grid_figure.add_class("cnnw-imagegrid-figure")
        self.add_class("cnnw-imagegrid")
        pager = W.HBox([self.prev_button, self.next_button, self.page_label], layout=W.Layout(align_items="center"))
        super().__init__([self.header, pager, self.message, self.grid_figure, self.selection])
        self._render()

    # --- pages ---------------------------------------------------------------------------------
    @property
    def pages(self) -> int | None:
        """Number of pages (None while the set's length is unknown)."""
        return None if self._end is None else max(1, -(-self._end // self.per_page))

    def _turn(self, step: int) -> None:
        self.page = max(0, self.page + step)

    @T.validate("page")
    def _valid_page(self, proposal):
        p = max(0, int(proposal["value"]))
        return p if self.pages is None else min(p, self.pages - 1)

    @T.observe("page")
    def _on_page(self, change) -> None:
        self._render()

    @T.validate("index")
    def _valid_index(self, proposal):
        i = int(proposal["value"])
        if i < -1 or (self._end is not None and i >= self._end):
            raise T.TraitError(f"index {i} is out of range: the set has {self._end} images (0..{self._end - 1}, or -1 for none).")
        return i

    @T.observe("index")
    def _on_index(self, change) -> None:
        i = change["new"]
        if i < 0:
            self.image = None
            self.selection.value = "<i style='color:#666'>click an image to select it</i>"
            self._outline()
            return
        try:
            self.image = self.images.image(i)
        except Exception as e:
            self.message.exception(e)
            return
        if i // self.per_page != self.page:
            self.page = i // self.per_page  # re-renders and outlines
        else:
            self._outline()
        label = self.images.label(i)
        name = f" · <b>{html.escape(self.images.class_name(label))}</b>" if label is not None else ""
        where = self.image if isinstance(self.image, str) else ""
        where = f" · <code>{html.escape(os.path.basename(where))}</code>" if where else ""
        self.selection.value = f"selected: image {i}{name}{where}"

    # --- drawing -------------------------------------------------------------------------------
    def _tile(self, i: int) -> tuple[np.ndarray, str]:
        """The thumbnail of image ``i`` (``tile x tile x 3``) and its caption."""
        if i in self._tiles:
            self._tiles.move_to_end(i)
            return self._tiles[i]
        img = self.images.image(i)
        t = self.probe.display(img)[0] if self.probe is not None else to_tensor(img)
        rgb = _fit(render.image_rgb(t), self.tile)
        label = self.images.label(i)
        if label is not None:
            caption = self.images.class_name(label)
        elif isinstance(img, str):
            caption = os.path.basename(img)
        else:
            caption = f"#{i}"
        self._tiles[i] = (rgb, caption)
        if len(self._tiles) > 4 * self.per_page:
            self._tiles.popitem(last=False)
        return rgb, caption

    def _cell(self) -> tuple[int, int]:
        return self.tile + GAP, self.tile + CAPTION + GAP

    def page_image(self, page: int | None = None) -> tuple[np.ndarray, int]:
        """The mosaic of one page (uint8 ``H x W x 3``, captions drawn under the tiles) and its number of images."""
        page = self.page if page is None else page
        start = page * self.per_page
        stop = start + self.per_page if self._end is None else min(self._end, start + self.per_page)
        self.images._read_ahead(stop)  # a shuffled or iterable DataLoader: stream a pass up to this page
        tiles = []
        for i in range(start, stop):
            try:
                tiles.append(self._tile(i))
            except IndexError:  # past the end of a set of unknown length
                self._end = i
                break
        cw_, ch = self._cell()
        rows = max(1, -(-len(tiles) // self.cols))
        cols = self.cols if rows > 1 else max(1, len(tiles))
        canvas = Image.new("RGB", (cols * cw_ - GAP, rows * ch - GAP), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        for k, (rgb, caption) in enumerate(tiles):
            r, c = divmod(k, self.cols)
            x, y = c * cw_, r * ch
            canvas.paste(Image.fromarray(rgb), (x, y))
            text = caption
            while len(text) > 1 and draw.textlength(text, font=self._font) > self.tile:
                text = text[:-2] + "…"
            tw = draw.textlength(text, font=self._font)
            draw.text((x + (self.tile - tw) / 2, y + self.tile + 3), text, fill=(20, 20, 20), font=self._font)
        return np.asarray(canvas), len(tiles)

    def _render(self) -> None:
        try:
            rgb, n = self.page_image()
        except Exception as e:  # an unreadable image, a set that cannot be read: say so in the panel
            self.message.exception(e)
            return
        self.message.clear()
        self._page_rgb, self._page_n = rgb, n
        old = self.grid_mark.image
        self.grid_mark.image = W.Image(value=render.encode(rgb, "png"), format="png")  # a new widget: bqplot redraws
        dispose(old)
        h, w = rgb.shape[:2]
        with self.grid_figure.hold_sync():
            self._xs.min, self._xs.max = 0.0, float(w)
            self._ys.min, self._ys.max = 0.0, float(h)
            self.grid_mark.x, self.grid_mark.y = [0.0, float(w)], [0.0, float(h)]
            self.grid_figure.layout.width = f"{w + 4}px"
            self.grid_figure.layout.height = f"{h + 4}px"
        self.page_label.value = "&nbsp;" + self.page_text()
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.pages is not None and self.page >= self.pages - 1
        self._outline()

    def page_text(self) -> str:
        """``"images 25–48 of 120"`` (1-based)."""
        start = self.page * self.per_page
        if self._page_n == 0:
            return "no images on this page"
        total = f" of {self._end}" if self._end is not None else ""
        return f"images {start + 1}–{start + self._page_n}{total}"

    def _outline(self) -> None:
        pos = self.index - self.page * self.per_page
        if self.index < 0 or not 0 <= pos < self._page_n or self._page_rgb is None:
            self._sel.visible = False
            return
        r, c = divmod(pos, self.cols)
        cw_, ch = self._cell()
        h = self._page_rgb.shape[0]
        x0, x1 = c * cw_ - 2.0, c * cw_ + self.tile + 2.0
        y0, y1 = h - (r * ch - 2.0), h - (r * ch + self.tile + CAPTION)  # bqplot's y counts from the bottom
        with self._sel.hold_sync():
            self._sel.x = [x0, x1, x1, x0, x0]
            self._sel.y = [y0, y0, y1, y1, y0]
            self._sel.visible = True

    # --- clicks --------------------------------------------------------------------------------
    def _on_click(self, mark, content) -> None:
        data = content.get("data", {}) if isinstance(content, dict) else {}
        self.select_at(float(data.get("click_x", -1)), float(data.get("click_y", -1)), flipped=True)

    def select_at(self, x: float, y: float, flipped: bool = False) -> int | None:
        """Select the image whose tile (or caption) is at pixel ``(x, y)`` of the page (``flipped``: y from the bottom)."""
        if self._page_rgb is None or x < 0 or y < 0:
            return None
        if flipped:
            y = self._page_rgb.shape[0] - y
        cw_, ch = self._cell()
        c, r = int(x // cw_), int(y // ch)
        if c >= self.cols or x - c * cw_ > self.tile:  # a click in the gap between tiles
            return None
        pos = r * self.cols + c
        if not 0 <= pos < self._page_n:
            return None
        self.index = self.page * self.per_page + pos
        return self.index

    # --- static --------------------------------------------------------------------------------
    def figure(self, **kwargs):
        """A matplotlib figure of the page shown, the selected image outlined."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        rgb = self._page_rgb if self._page_rgb is not None else self.page_image()[0]
        h, w = rgb.shape[:2]
        fig, ax = plt.subplots(figsize=(max(4.0, w / 100), max(3.0, h / 100 + 0.6)))
        ax.imshow(rgb, interpolation="nearest")
        pos = self.index - self.page * self.per_page
        if self.index >= 0 and 0 <= pos < self._page_n:
            r, c = divmod(pos, self.cols)
            cw_, ch = self._cell()
            ax.add_patch(Rectangle((c * cw_ - 2, r * ch - 2), self.tile + 4, self.tile + CAPTION + 2, fill=False,
                                   edgecolor=SELECTED, linewidth=2))
        ax.set_title(f"{self.images.description}\n{self.page_text()}", fontsize=10)
        ax.axis("off")
        fig.tight_layout()
        return fig
