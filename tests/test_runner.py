"""The one runner that drives every long job into a panel."""
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cnnwidgets.runner import Runner, Step, run


def ticking(n, dt=0.005, log=None):
    try:
        for i in range(n):
            time.sleep(dt)
            yield Step(i + 1, n, i)
    finally:
        if log is not None:
            log.append("closed")  # the job's cleanup (model state restored) runs on stop too


def test_frames_are_throttled_and_the_last_is_final():
    frames = []
    r = Runner(ticking(100), lambda item, final: frames.append((item.step, final)), fps=20, mode="thread").start()
    assert r.join(10) and r.state == "done"
    assert r.items == 100
    assert 2 <= len(frames) < 60  # ~0.5 s of steps at 20 fps: stale items dropped, not queued
    assert frames[-1] == (100, True) and not any(f for _, f in frames[:-1])


def test_stop_pause_resume_and_job_cleanup():
    log, frames = [], []
    r = Runner(ticking(10_000, log=log), lambda item, final: frames.append(item.step), fps=50, mode="thread").start()
    time.sleep(0.1)
    r.pause()
    time.sleep(0.05)
    paused_at = r.items
    time.sleep(0.2)
    assert r.state == "paused" and r.items == paused_at  # nothing runs while paused
    r.resume()
    time.sleep(0.1)
    assert r.items > paused_at
    r.stop()
    assert r.join(5) and r.state == "stopped" and log == ["closed"]
    assert frames[-1] == r.items  # the last step is shown when stopped


def test_errors_reach_the_panel_not_the_thread():
    errors = []

    def broken():
        yield Step(1, 2)
        raise ValueError("learning rate too high")

    r = Runner(broken, lambda *a: None, on_error=lambda e, text: errors.append(text), mode="thread").start()
    r.join(5)
    assert r.state == "error" and errors == ["ValueError: learning rate too high"]


def test_foreground_mode_runs_in_the_calling_thread():
    threads = []
    r = Runner(ticking(5), lambda item, final: threads.append(threading.current_thread()), mode="foreground").start()
    assert r.state == "done" and set(threads) == {threading.main_thread()}
    assert run(ticking(3)).step == 3


def test_interpreter_exit_during_a_torch_job_is_clean():
    """A run still going when Python exits is stopped at a step boundary, not killed inside torch."""
    code = textwrap.dedent("""
        import torch, time
        from cnnwidgets.runner import Runner
        def job():
            x = torch.randn(512, 512)
            while True:
                for _ in range(5):
                    x = torch.tanh(x @ x.T / 512)
                yield x
        Runner(job, lambda *a: None, mode="thread").start()
        time.sleep(0.3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "terminate called" not in proc.stderr
