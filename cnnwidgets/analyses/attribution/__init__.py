"""Attribution maps: which pixels made the model say "tiger cat"? One verb for every method.

>>> a = attribute(probe, sample_image("chelsea"), "integrated_gradients", baseline="blurred")
>>> a.map.shape, a.target, a.delta          # (224, 224), 282, convergence delta
>>> for step in attribute_steps(probe, image, "smoothgrad"): ...   # partial maps as samples accumulate

Methods (``METHODS``; computed with Captum, cnnwidgets adds defaults, progressive maps, model safety and
display): ``saliency`` (|d score / d pixel|, max over colour channels),
``smoothgrad``, ``input_x_gradient``, ``integrated_gradients``, ``gradcam``, ``guided_gradcam``,
``occlusion``, ``lime``; for the panel's list only (not "All methods"), the NTU homework's exact settings:
``saliency_homework``, ``smoothgrad_homework`` (and ``smoothgrad_homework_fixed``, its intended noise),
``integrated_gradients_homework``, ``lime_homework`` (:mod:`cnnwidgets.analyses.homework`). Each is one :class:`Method` class in one file of :mod:`.methods`; a new file
there with a ``@register``-ed class adds a method everywhere (this API, the Saliency panel's list, its
option controls and its "All methods" tab). ``register(MyMethod)`` adds one from a notebook.

Attributions are taken with respect to the image *in pixels* (the [0, 1] image as the model sees it,
resized and cropped); the model's normalisation runs inside the attributed function, so an IG baseline
"black" is a black image and SmoothGrad noise is a fraction of the pixel range.

Every call runs on the Probe's private view of the model (``probe.pixel_model()``: eval mode, frozen
parameters, so gradients flow to the input only; the user's module is never hooked, switched or frozen),
removes any hook Captum leaves on that view, even after an exception, and draws its random numbers
from private generators (never torch's global one, which a training loop uses for dropout).
Display maths (percentile clip, abs/signed scaling, overlay) is in :mod:`..attribution_display`; the
randomisation sanity check in :mod:`.sanity`.
"""
from ..attribution_display import channel_reduce, clip_percentile, normalize_map, overlay, to_rgb  # noqa: F401
from .api import Stopped, all_methods, attribute, attribute_steps, interruptible  # noqa: F401
from .base import (DEFAULTS, GRADIENT_METHODS, LABELS, METHODS, SLOW, Attribution, Method, Option, Pace,  # noqa: F401
                   Partial, get, register, registered, spread, spread2d)
from .common import (BASELINE_LABELS, BASELINES, cam_layer, channel_words, check_classifier, check_target,  # noqa: F401
                     class_names, default_cam_layer, find_classes, guarded, make_baseline, minmax, pixels, spatial_layers,
                     top_classes)
from . import methods as _methods  # noqa: E402,F401  (imports every method file: they register themselves)
from .methods.integrated_gradients import path_rule  # noqa: F401
from .methods.lime import lime_choices, lime_fit, lime_images, lime_samples, lime_weights, superpixels  # noqa: F401
from .methods.occlusion import window_positions  # noqa: F401
from .methods.smoothgrad import smoothgrad_noise  # noqa: F401
from .sanity import cascade_groups, cascading_randomization, sanity_check, spearman, ssim  # noqa: F401
