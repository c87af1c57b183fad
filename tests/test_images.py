"""Every kind of image a user holds becomes the same tensor; everything else is a clear error."""
import numpy as np
import pytest
import torch
from PIL import Image

import cnnwidgets as cw
from cnnwidgets.images import Preprocess, sample_dataset, to_images, to_tensor


def test_all_image_kinds_give_the_same_tensor(cat, tmp_path):
    arr = np.asarray(cat)  # HxWx3 uint8
    ref = to_tensor(cat)
    assert ref.shape == (3, *arr.shape[:2]) and ref.dtype == torch.float32
    assert 0 <= float(ref.min()) and float(ref.max()) <= 1
    path = tmp_path / "cat.png"
    cat.save(path)
    kinds = {
        "path str": str(path),
        "path": path,
        "PIL": cat,
        "numpy uint8": arr,
        "numpy float": arr.astype(np.float32) / 255,
        "tensor float CxHxW": torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255,
        "tensor uint8 CxHxW": torch.from_numpy(arr.copy()).permute(2, 0, 1),
    }
    for kind, img in kinds.items():
        torch.testing.assert_close(to_tensor(img), ref, atol=1e-6, rtol=0, msg=kind)
    # a read-only array (np.asarray of a PIL image) converts without a warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_tensor(np.asarray(cat))
        to_tensor(np.asarray(cat).astype(np.float32) / 255)


def test_a_batch_tensor_and_a_list_are_several_images(cat, probe):
    t = to_tensor(cat)
    assert len(to_images(torch.stack([t, t.flip(-1)]))) == 2
    assert len(to_images([cat, cw.sample_image("coffee")])) == 2
    assert probe.prepare(torch.stack([t, t])).shape == (2, 3, 224, 224)
    assert probe.prepare([cat, cw.sample_image("coffee"), str(_save(cat))]).shape == (3, 3, 224, 224)


def _save(img, name="img.png"):
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp()) / name
    img.save(p)
    return p


def test_grayscale_becomes_three_equal_channels(cat):
    gray = cat.convert("L")
    for img in (gray, np.asarray(gray)[..., None], torch.from_numpy(np.asarray(gray).copy())[None]):
        t = to_tensor(img)
        assert t.shape == (3, cat.height, cat.width)
        assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert to_tensor(gray, channels=1).shape == (1, cat.height, cat.width)
    assert to_tensor(cat, channels=1).shape == (1, cat.height, cat.width)  # colour to gray for 1-channel models


def test_rgba_is_composited_on_white(cat):
    rgba = cat.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:10, :10, 3] = 0  # a transparent corner
    t = to_tensor(Image.fromarray(a))
    assert t.shape[0] == 3
    assert torch.all(t[:, :10, :10] == 1.0)  # white where transparent
    torch.testing.assert_close(t[:, 20:, 20:], to_tensor(cat)[:, 20:, 20:])
    # a numpy/tensor RGBA drops its alpha channel
    assert to_tensor(a).shape[0] == 3 and to_tensor(torch.from_numpy(a).permute(2, 0, 1)).shape[0] == 3


def test_display_is_what_the_model_sees(probe, cat):
    d = probe.display(cat)
    assert d.shape == (1, 3, 224, 224) and float(d.min()) >= 0 and float(d.max()) <= 1
    torch.testing.assert_close(probe.transform.normalize(d[0]).to(probe.device)[None], probe.prepare(cat),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probe.transform.denormalize(probe.prepare(cat)).cpu(), d, atol=1e-5, rtol=1e-5)


# --- bad input ------------------------------------------------------------------------------------

def test_missing_path(probe):
    with pytest.raises(FileNotFoundError, match="not found.*nowhere/cat.jpg"):
        probe.activations("nowhere/cat.jpg", 0)


def test_a_file_that_is_not_an_image(probe, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a picture")
    with pytest.raises(ValueError, match="not an image file"):
        probe.activations(f, 0)


def test_a_two_dimensional_array_is_a_grayscale_image(probe, cat):
    """A 28x28 array (MNIST) is a gray image, for 1-channel and 3-channel models alike."""
    gray = np.asarray(cat.convert("L"))
    ref = to_tensor(gray[..., None])
    for img in (gray, torch.from_numpy(gray.copy()), gray.astype(np.float32) / 255,
                torch.from_numpy(gray.copy()).float() / 255):
        torch.testing.assert_close(to_tensor(img), ref, atol=1e-6, rtol=0)
        assert to_tensor(img, channels=1).shape == (1, *gray.shape)
    assert to_images(torch.from_numpy(gray.copy()))[0].shape == (3, *gray.shape)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    assert probe.activations(digit, 0).shape[0] == 1  # through the Probe's preprocessing
    one = cw.Probe(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()), device="cpu",
                   transform=Preprocess(resize=None, crop=(28, 28), channels=1, mean=(0.5,), std=(0.5,)))
    assert one.prepare(digit).shape == (1, 1, 28, 28)
    assert one.prepare([digit, torch.from_numpy(digit)]).shape == (2, 1, 28, 28)


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    with Image.open(tmp_path / "ramp16.png") as im:
        assert im.mode.startswith("I")  # PIL reads it as a 16-bit ("I;16") image
    t = to_tensor(tmp_path / "ramp16.png", channels=1)
    np.testing.assert_allclose(t[0].numpy(), ramp / 65535.0, atol=1e-6)
    assert 0.45 < float(t.mean()) < 0.55  # not saturated to white (PIL's convert("L") clips at 255)
    assert to_tensor(tmp_path / "ramp16.png").shape == (3, 32, 64)
    # a PIL image in mode "I" (32-bit) with 16-bit values, and the same as a uint16 array
    torch.testing.assert_close(to_tensor(Image.fromarray(ramp.astype(np.int32)), 1), t)
    torch.testing.assert_close(to_tensor(ramp, 1), t)
    with pytest.raises(ValueError, match=r"values in \[0, 69993\].*0\.\.65535"):
        to_tensor(Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1111))


def test_float_tiff_keeps_its_range_or_says_how_to_scale(tmp_path):
    ramp = np.linspace(0, 1, 48 * 40, dtype=np.float32).reshape(40, 48)
    Image.fromarray(ramp).save(tmp_path / "unit.tif")
    t = to_tensor(tmp_path / "unit.tif", channels=1)
    np.testing.assert_allclose(t[0].numpy(), ramp, atol=1e-7)
    Image.fromarray(ramp * 4000 - 100).save(tmp_path / "raw.tif")
    with pytest.raises(ValueError, match=r"raw\.tif.*float image.*\[-100, 3900\].*expected \[0, 1\].*a\.min\(\)") as e:
        to_tensor(tmp_path / "raw.tif")
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)


def test_nan_and_inf_are_named(tmp_path):
    cases = {
        "NaN": [np.full((8, 8), np.nan, np.float32), torch.full((3, 8, 8), float("nan")),
                Image.fromarray(np.full((8, 8), np.nan, np.float32))],
        "infinite": [np.full((8, 8, 3), np.inf, np.float32), torch.full((1, 8, 8), -float("inf"))],
    }
    half = np.full((8, 8, 3), 0.5, np.float32)
    half[0, 0, 0] = np.nan
    cases["NaN"].append(half)
    for word, images in cases.items():
        for img in images:
            with pytest.raises(ValueError, match=rf"{word} values.*finite numbers in \[0, 1\]") as e:
                to_tensor(img)
            assert e.value.__cause__ is None and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="1 NaN values"):
        to_tensor(half)


def test_complex_images_are_refused():
    for img in (np.zeros((8, 8), np.complex64), np.ones((8, 8, 3), np.complex128), torch.zeros(3, 8, 8, dtype=torch.complex64)):
        with pytest.raises(TypeError, match=r"complex.*real values.*abs") as e:
            to_tensor(img)
        assert e.value.__cause__ is None


def test_five_dimensional_tensor(probe):
    with pytest.raises(ValueError, match=r"5-D tensor.*NxCxHxW"):
        probe.activations(torch.rand(1, 2, 3, 64, 64), 0)
    with pytest.raises(ValueError, match="5-D"):
        probe.display(torch.rand(1, 2, 3, 64, 64))


def test_one_pixel_image(probe):
    with pytest.raises(ValueError, match="1x1 pixels: too small"):
        probe.activations(Image.new("RGB", (1, 1)), 0)


def test_other_bad_images(probe, cat):
    with pytest.raises(ValueError, match="preprocess=False"):  # an already-normalised tensor
        probe.prepare(probe.prepare(cat)[0].cpu())
    with pytest.raises(ValueError, match="permute"):  # HxWxC given as a tensor
        to_tensor(torch.rand(64, 64, 3))
    with pytest.raises(ValueError, match="dtype"):
        to_tensor(np.zeros((8, 8, 3), np.int64))
    with pytest.raises(TypeError, match="expected an image"):
        to_tensor(42)
    with pytest.raises(ValueError, match="empty list"):
        to_images([])
    with pytest.raises(ValueError, match="colour channels"):
        to_tensor(torch.rand(2, 8, 8))


# --- sample photographs ---------------------------------------------------------------------------

def test_sample_images_are_bundled_photographs():
    imgs = cw.sample_images()
    assert {"chelsea", "coffee", "astronaut", "rocket", "motorcycle"} <= set(imgs)
    for name, img in imgs.items():
        assert img.mode == "RGB" and min(img.size) >= 128, name
    assert set(cw.sample_names()) >= set(imgs)
    assert cw.sample_image("camera").mode == "RGB"  # grayscale photos come as RGB too
    with pytest.raises(ValueError, match="Did you mean 'chelsea'"):
        cw.sample_image("chelsee")


def test_sample_batch_is_deterministic_crops_and_flips():
    b = cw.sample_batch(6, size=64)
    assert b.shape == (6, 3, 64, 64) and float(b.min()) >= 0 and float(b.max()) <= 1
    assert torch.equal(b, cw.sample_batch(6, size=64))
    assert not torch.equal(b, cw.sample_batch(6, size=64, seed=1))
    x, labels = sample_dataset(4, size=32, names=["chelsea", "coffee"])
    assert x.shape == (4, 3, 32, 32) and labels == ["chelsea", "coffee", "chelsea", "coffee"]
    with pytest.raises(ValueError):
        cw.sample_batch(0)


def test_noise_image():
    n = cw.noise_image(32, seed=3)
    assert n.shape == (3, 32, 32) and torch.equal(n, cw.noise_image(32, seed=3))


def test_preprocess_defaults_are_imagenet():
    p = Preprocess()
    assert p.input_size == (224, 224) and p.resize == 256
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
    with pytest.raises(ValueError, match="different sizes"):
        Preprocess(resize=None, crop=None)([torch.rand(3, 32, 32), torch.rand(3, 40, 40)])
