"""Controls shared by the FeatureMaps and Histogram panels: the input-image picker and layer options."""
from __future__ import annotations

import io
from typing import Callable

import ipywidgets as W

from ..images import noise_image, sample_image, to_tensor
from ._base import Message, clear_upload, uploaded_files

NOISE = "uniform noise"
GIVEN = "your image"


class ImageInput(W.HBox):
    """A dropdown of inputs (the sample photographs, uniform noise, the image passed in, uploads) and a
    FileUpload button. ``image`` is the current choice; ``on_change(fn)`` calls ``fn(image)``."""

    def __init__(self, probe, image=None, message: Message | None = None, default: str = "chelsea"):
        self.probe = probe
        self.message = message or Message()
        self._images: dict[str, object] = {}
        if image is not None:
            self._images[GIVEN] = image
        names = ["chelsea", "coffee", "astronaut", "rocket", "motorcycle", "immunohistochemistry", "hubble", "retina"]
        options = ([GIVEN] if image is not None else []) + names + [NOISE]
        self.dropdown = W.Dropdown(options=options, value=GIVEN if image is not None else default,
                                   description="input", layout=W.Layout(width="260px"),
                                   style={"description_width": "40px"})
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload",
                                   layout=W.Layout(width="110px"))
        self._callbacks: list[Callable] = []
        self._quiet = False  # set while the dropdown is changed from here: the change is announced once, at the end
        self.dropdown.observe(self._on_choice, "value")
        self.upload.observe(self._on_upload, "value")
        super().__init__([self.dropdown, self.upload])

    @property
    def name(self) -> str:
        return self.dropdown.value

    @property
    def image(self):
        """The chosen image (a PIL image, a tensor, or whatever was passed in)."""
        name = self.dropdown.value
        if name in self._images:
            return self._images[name]
        if name == NOISE:
            h, w = self.probe.transform.input_size
            return noise_image(max(h, w), self.probe.transform.channels)
        img = sample_image(name)
        self._images[name] = img
        return img

    def set_image(self, image, name: str = GIVEN) -> None:
        """Show ``image`` (anything :func:`cnnwidgets.images.to_tensor` takes) under ``name``."""
        to_tensor(image, self.probe.transform.channels)  # raises a clear error if it is not an image
        self._images[name] = image
        self._quiet = True  # new options select the first one (ipywidgets 7 and 8): one announcement, not two
        try:
            if name not in self.dropdown.options:
                self.dropdown.options = [name, *self.dropdown.options]
            self.dropdown.value = name
        finally:
            self._quiet = False
        self._fire()  # also when ``name`` was shown already: its image may be new (the same file uploaded again)

    def on_change(self, fn: Callable) -> None:
        self._callbacks.append(fn)

    def _on_choice(self, change) -> None:
        if not self._quiet:
            self._fire()

    def _fire(self) -> None:
        for fn in self._callbacks:
            fn(self.image)

    def _on_upload(self, change) -> None:
        files = uploaded_files(self.upload)
        if not files:
            return
        name, content = files[-1]
        clear_upload(self.upload)
        self.load_upload(name, content)

    def load_upload(self, name: str, content: bytes) -> bool:
        """Add an uploaded file as an input; a file that is not an image gives a message, not an error."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(content)) as im:
                im.load()
                img = im.copy()
        except (UnidentifiedImageError, OSError, ValueError) as e:
            self.message.error(f"{name!r} is not an image file (PNG, JPEG, GIF, BMP, TIFF, WebP ...): "
                               f"{type(e).__name__}. Upload a picture instead.")
            return False
        self.message.clear()
        self.set_image(img, f"upload: {name}")
        return True


