"""cnnwidgets: interactive Jupyter panels that show what a convolutional network has learned.

>>> import cnnwidgets as cw
>>> probe = cw.Probe(cw.load_model())          # offline default: efficientnet_lite0, ImageNet weights
>>> cw.FeatureMaps(probe, cw.sample_image("chelsea"))
"""
from importlib import import_module

from . import colab as _colab
from .images import Preprocess, noise_image, sample_batch, sample_dataset, sample_image, sample_images, sample_names
from .imagesets import ImageSet, image_set
from .models import imagenet_classes, load_checkpoint, load_model
from .probe import Layer, Probe

__version__ = "0.1.0"

_colab.enable_widgets()  # in Colab: its custom widget manager, which bqplot's charts need; elsewhere nothing

# Panels and analysis modules load on first use, so `import cnnwidgets` stays light.
_LAZY = {
    "FeatureMaps": "cnnwidgets.widgets.featuremaps",
    "Histogram": "cnnwidgets.widgets.histogram",
    "CKAHeatmap": "cnnwidgets.widgets.cka_heatmap",
    "Dream": "cnnwidgets.widgets.dream",
    "Saliency": "cnnwidgets.widgets.saliency",
    "Embedding": "cnnwidgets.widgets.embedding",
    "Explorer": "cnnwidgets.widgets.explorer",
    "ImageGrid": "cnnwidgets.widgets.imagegrid",
    "TopImages": "cnnwidgets.widgets.topimages",
    "KNNAccuracy": "cnnwidgets.widgets.knn",
    "Monitor": "cnnwidgets.widgets.monitor",
    "cka": "cnnwidgets.analyses.cka",
    "dream": "cnnwidgets.analyses.dream",
    "attribution": "cnnwidgets.analyses.attribution",
    "stats": "cnnwidgets.analyses.stats",
    "embedding": "cnnwidgets.analyses.embedding",
    "monitor": "cnnwidgets.analyses.monitor",
    "knn": "cnnwidgets.analyses.knn",
    "receptive_field": "cnnwidgets.analyses.receptive_field",
    "index": "cnnwidgets.index",
    "homework": "cnnwidgets.analyses.homework",
}


def __getattr__(name):
    if name in _LAZY:
        module = import_module(_LAZY[name])
        value = module if _LAZY[name].endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnwidgets' has no attribute {name!r}")


__all__ = ["Probe", "Layer", "Preprocess", "image_set", "ImageSet", "load_model", "load_checkpoint", "imagenet_classes", "sample_image",
           "sample_images", "sample_names", "sample_batch", "sample_dataset", "noise_image", *_LAZY]
