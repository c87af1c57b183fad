"""cnnwidgets: interactive Jupyter panels that show what a convolutional network has learned."""
from .images import Preprocess, sample_batch, sample_image, sample_images, sample_names, noise_image
from .models import load_model, load_checkpoint, imagenet_classes
from .probe import Probe, Layer

__version__ = "0.1.0"
