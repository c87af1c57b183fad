"""What every benchmark script shares: median timing of repeated runs."""
import statistics
import time


def timed(fn, repeats):
    """Run ``fn`` ``repeats`` times: (median seconds, the last result, every time)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out, times
