"""A least-recently-used cache of activations with a memory budget in bytes."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Hashable

import torch


def digest(x: torch.Tensor) -> str:
    """A content hash of a tensor (the image part of a cache key)."""
    t = x.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), t.dtype)).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ActivationCache:
    """``key -> tensor`` with at most ``budget`` bytes held; the least recently used go first."""

    def __init__(self, budget: int = 512 * 2**20):
        self.budget = int(budget)
        self._data: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    def get(self, key: Hashable) -> torch.Tensor | None:
        with self._lock:
            t = self._data.get(key)
            if t is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return t

    def put(self, key: Hashable, t: torch.Tensor) -> None:
        size = self._size(t)
        with self._lock:
            if key in self._data:
                self._bytes -= self._size(self._data.pop(key))
            if size > self.budget:
                return
            self._data[key] = t
            self._bytes += size
            while self._bytes > self.budget:
                _, old = self._data.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key) -> bool:
        return key in self._data
