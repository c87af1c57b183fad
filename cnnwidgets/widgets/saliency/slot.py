"""A job slot whose Stop does not wait for the job to finish its chunk of work."""
from __future__ import annotations

import threading

from .._base import RunControls


class Slot(RunControls):
    """:class:`RunControls` for jobs that take a ``stop`` event (``attribute_steps``, ``all_methods``,
    ``sanity_check``): a job made with ``stop=slot.event()`` ends within one layer of the model when the slot
    stops it (Stop, a new request in this slot, the panel's ``close()``), not at the end of its chunk."""

    def __init__(self, *args, **kwargs):
        self._live: set = set()  # the events of the jobs running in this slot
        self._next: threading.Event | None = None
        super().__init__(*args, **kwargs)

    def event(self) -> threading.Event:
        """The stop event for the job about to be run here (call it while making the job)."""
        self._next = threading.Event()
        return self._next

    def run(self, job, total: int | None = None):
        ev, self._next = self._next or threading.Event(), None
        return super().run(self._tracked(job, ev), total)

    def _tracked(self, job, ev: threading.Event):
        self._live.add(ev)  # runs when the job starts: after the job it replaces was stopped
        try:
            yield from job
        finally:
            self._live.discard(ev)

    def stop(self, wait: float | None = None) -> bool:
        for ev in list(self._live):
            ev.set()
        return super().stop(wait)
