"""The benchmark scripts still run and print their tables (tiny settings: they are run on demand for the
figures in the README; this only keeps them from rotting)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "dream.py": (["--only", "d", "--layers", "early", "--atlas", "0", "--steps", "4", "--repeats", "1", "--seeds", "0"],
                 ["| (d) s/step 1 image vs bare", "| (d) info: our step vs a bare pass", "| (d) floor"]),
    "cka.py": (["--n", "32", "--repeats", "1", "--numpy-pairs", "2", "--skip-memory", "--only", "a"],
               ["faster than numpy", "any exact method is at most"]),
    "truncated_forward.py": (["--runs", "1", "--batch", "2"], ["full/trunc", "cold/cached"]),
    "featuremaps.py": (["--runs", "1", "--alt-runs", "1"], ["matplotlib ms", "target: ours < 50 ms per move"]),
    "private_view.py": (["--runs", "1", "--size", "64", "--models", "resnet18"], ["probe/model", "fingerprint"]),
    "attribution.py": (["--tiny"], ["Integrated Gradients", "prog/one: progressive / one-shot", "Stop latency"]),
    "monitor.py": (["--tiny"], ["with/without", "time inside the monitor's calls", "bit for bit the same with and without: True"]),
    "index.py": (["--tiny"], ["ours/limit", "same as the plain loop's: True", "flat:", "two processes / one"]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script_runs(script):
    args, expected = CASES[script]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for text in expected:
        assert text in r.stdout, f"{text!r} missing from the output of {script}:\n{r.stdout[-3000:]}"
