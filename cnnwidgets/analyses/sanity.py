"""The randomisation sanity check for attribution maps; it lives in :mod:`.attribution.sanity` (this name is
kept for ``from cnnwidgets.analyses import sanity``)."""
from .attribution.sanity import (_randomize, _weighted, cascade_groups, cascading_randomization,  # noqa: F401
                                 sanity_check, spearman, ssim)
