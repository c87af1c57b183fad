"""One runner for every long job: drives a generator into a panel, throttled, stoppable.

Long analyses (a dream, CKA over a dataset, t-SNE) are generators that yield progress items.
A :class:`Runner` iterates one in a background thread (JupyterLab, Notebook 7, VS Code, Voila)
or in the foreground (Colab, whose front end does not show updates sent from other threads),
hands the *latest* item to ``on_frame`` at most ``fps`` times a second (stale items are dropped,
never queued), always delivers the last item with ``final=True``, and supports pause/resume/stop.
No widget is imported here; panels pass callbacks.
"""
from __future__ import annotations

import atexit
import sys
import threading
import weakref
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

IDLE, RUNNING, PAUSED, STOPPED, DONE, ERROR = "idle", "running", "paused", "stopped", "done", "error"


@dataclass
class Step:
    """A progress item: ``step`` of ``total``, and whatever the job has so far in ``value``."""

    step: int
    total: int | None
    value: Any = None
    info: dict | None = None


_LIVE: "weakref.WeakSet[Runner]" = weakref.WeakSet()


@atexit.register
def _stop_all(timeout: float = 10.0) -> None:
    """At interpreter exit, stop running jobs and let them finish their step (a thread killed inside
    a torch op aborts the process with 'terminate called without an active exception')."""
    live = [r for r in list(_LIVE) if r.running]
    for r in live:
        r.stop()
    for r in live:
        r.join(timeout)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def default_mode() -> str:
    """``"foreground"`` on Colab, ``"thread"`` elsewhere."""
    return "foreground" if in_colab() else "thread"


class Runner:
    """Drive ``job`` (a generator, or a function returning one) into ``on_frame(item, final)``.

    ``on_progress(done, total)``, ``on_state(state)`` and ``on_error(exc, text)`` are optional.
    """

    def __init__(self, job: Iterator | Callable[[], Iterator], on_frame: Callable[[Any, bool], None], *,
                 fps: float = 15.0, total: int | None = None, on_progress: Callable[[int, int | None], None] | None = None,
                 on_state: Callable[[str], None] | None = None, on_error: Callable[[BaseException, str], None] | None = None,
                 mode: str = "auto"):
        self._job = job
        self.on_frame = on_frame
        self.fps = fps
        self.total = total
        self.on_progress = on_progress
        self.on_state = on_state
        self.on_error = on_error
        self.mode = default_mode() if mode == "auto" else mode
        if self.mode not in ("thread", "foreground"):
            raise ValueError(f"mode must be 'auto', 'thread' or 'foreground', got {mode!r}.")
        self.state = IDLE
        self.items = 0  #: items the job yielded
        self.frames = 0  #: items delivered to on_frame
        self.last = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._thread: threading.Thread | None = None

    # --- control -------------------------------------------------------------------------------
    def start(self) -> "Runner":
        if self.state in (RUNNING, PAUSED):
            raise RuntimeError("This runner is already running; stop() it first.")
        self._set(RUNNING)
        if self.mode == "thread":
            _LIVE.add(self)
            self._thread = threading.Thread(target=self._loop, name="cnnwidgets-runner", daemon=True)
            self._thread.start()
        else:
            try:
                self._loop()
            except KeyboardInterrupt:  # the notebook's interrupt button is the stop button here
                self._set(STOPPED)
        return self

    def pause(self) -> None:
        if self.state == RUNNING:
            self._resume.clear()
            self._set(PAUSED)

    def resume(self) -> None:
        if self.state == PAUSED:
            self._set(RUNNING)
            self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a threaded run to end; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, PAUSED)

    # --- the loop ------------------------------------------------------------------------------
    def _set(self, state: str) -> None:
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # a display callback must not kill the job
                traceback.print_exc()

    def _deliver(self, item, final: bool) -> None:
        self.frames += 1
        self.on_frame(item, final)
        if self.on_progress is not None:
            step = getattr(item, "step", self.items)
            total = getattr(item, "total", None) or self.total
            self.on_progress(step, total)

    def _loop(self) -> None:
        gen = self._job() if callable(self._job) and not hasattr(self._job, "__next__") else self._job
        period = 1.0 / self.fps if self.fps else 0.0
        next_frame = 0.0
        pending = False
        try:
            for item in gen:
                self.items += 1
                self.last = item
                pending = True
                now = time.perf_counter()
                if now >= next_frame:
                    self._deliver(item, False)
                    pending = False
                    next_frame = now + period
                if self._stop.is_set():
                    break
                if not self._resume.is_set():
                    if pending:  # show where it paused
                        self._deliver(self.last, False)
                        pending = False
                    self._resume.wait()
                    if self._stop.is_set():
                        break
        except BaseException as e:  # noqa: BLE001 - shown in the panel, interrupt included
            self.error = e
            close = getattr(gen, "close", None)
            if close:
                close()
            if isinstance(e, KeyboardInterrupt) and self.mode == "foreground":
                if self.last is not None:
                    self._deliver(self.last, True)
                raise
            if self.on_error is not None:
                self.on_error(e, "".join(traceback.format_exception_only(type(e), e)).strip())
            self._set(ERROR)
            if self.on_error is None and self.mode == "foreground":
                raise
            return
        close = getattr(gen, "close", None)
        if close:
            close()  # runs the job's finally blocks (model state restored)
        if self.last is not None:
            self._deliver(self.last, True)
        self._set(STOPPED if self._stop.is_set() else DONE)


def run(job: Iterator, on_item: Callable[[Any], None] | None = None):
    """Run a job to the end without widgets; returns its last item."""
    last = None
    for last in job:
        if on_item is not None:
            on_item(last)
    return last
