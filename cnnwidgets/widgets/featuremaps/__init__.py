"""FeatureMaps: every channel of one layer for one image (:class:`~.panel.FeatureMaps`), drawn by small views."""
from .controls import CMAPS
from .panel import FeatureMaps
from .views import BIG, BIG_PX, GRID_H, GRID_W, PAD

__all__ = ["FeatureMaps", "CMAPS", "GRID_W", "GRID_H", "BIG", "BIG_PX", "PAD"]
