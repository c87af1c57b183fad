"""``cw.index``: every channel's top images and statistics over a whole dataset, in one pass that shards and merges.

>>> ix = cw.index.build(probe, "photos/", ["_blocks.5", "_blocks.10"], k=16, out="photos.index")
>>> ix.top("_blocks.10", 7)            # [Hit(ref='photos/cat/1.jpg', score=9.1, y=3, x=5), ...]
>>> ix.stats("_blocks.10")["dead"]     # channels never > 0 over the set
>>> cw.index.open("photos.index")      # in a later session; cw.index.merge(a, b) joins shards
"""
from .core import (BY, FewerImagesThanK, Hit, Index, UnitsNotMaps, build, build_steps, from_bytes, merge, model_key,
                   open_index)

open = open_index

__all__ = ["build", "build_steps", "Index", "Hit", "merge", "open", "open_index", "from_bytes", "model_key",
           "UnitsNotMaps", "FewerImagesThanK", "BY"]
