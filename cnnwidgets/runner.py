"""One runner for every long job: drives a generator into a panel, throttled, stoppable.

Long analyses (a dream, CKA over a dataset, t-SNE) are generators that yield progress items.
A :class:`Runner` iterates one in a background thread (JupyterLab, Notebook 7, VS Code, Voila)
or in the foreground (Colab, whose front end does not show updates sent from other threads),
hands the *latest* item to ``on_frame`` at most ``fps`` times a second (stale items are dropped,
never queued), always delivers the last item with ``final=True``, and supports pause/resume/stop.
In the foreground, widget events that arrive meanwhile (a click on Stop or Pause, a slider) are
handled between steps (:func:`ui_events`), so the buttons work there too.
No widget is imported here; panels pass callbacks.
"""
from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .colab import in_colab

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


@contextlib.contextmanager
def ui_events():
    """Inside a Jupyter kernel: a function ``poll(n)`` that handles up to ``n`` pending front-end messages (widget
    clicks) while the calling code keeps the kernel busy; ``None`` elsewhere (a script, a test). Cells the user
    runs meanwhile wait and run when the block ends (jupyter-ui-poll), also when the block runs inside a widget's
    event handler (a Start button) rather than a cell."""
    try:
        from IPython import get_ipython
        from jupyter_ui_poll import ui_events as _ui_events
    except ImportError:
        yield None
        return
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        yield None
        return
    parent = kernel.get_parent() if hasattr(kernel, "get_parent") else getattr(kernel, "_parent_header", {})
    in_cell = (parent or {}).get("header", {}).get("msg_type") == "execute_request"
    wrapper = _ui_events()
    try:
        with wrapper as poll:
            yield poll
    finally:
        if not in_cell:  # started from a widget event: no end of cell will come to restore the kernel's handler
            try:
                wrapper._post_run_cell()  # restores it and runs the cells that waited
            except Exception:  # pragma: no cover - a jupyter-ui-poll without it: cells run after the next cell
                traceback.print_exc()


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
        self._poll = None  # foreground: handles pending widget events between steps

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
                with ui_events() as poll:
                    self._poll = poll
                    self._loop()
            except KeyboardInterrupt:  # the notebook's interrupt button stops it too
                self._set(STOPPED)
            finally:
                self._poll = None
        return self

    def pause(self) -> None:
        if self.state == RUNNING:
            self._resume.clear()
            self._set(PAUSED)

    def resume(self) -> None:
        if self.state == PAUSED:
            self._set(RUNNING)
            self._resume.set()

    def stop(self, wait: float | None = None) -> bool:
        """Ask the job to stop at its next step; with ``wait``, wait up to that many seconds for it (thread mode).
        True when it has ended."""
        self._stop.set()
        self._resume.set()
        if wait is not None and self.mode == "thread" and self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join(wait)
        return not self.running

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
                if self._poll is not None:
                    self._poll(20)  # Stop / Pause clicks and other widget events, between two steps
                if self._stop.is_set():
                    break
                if not self._resume.is_set():
                    if pending:  # show where it paused
                        self._deliver(self.last, False)
                        pending = False
                    while not self._resume.wait(0.05 if self._poll is not None else None):
                        self._poll(20)
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
