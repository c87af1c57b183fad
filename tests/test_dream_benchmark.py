"""benchmarks/dream.py's first-frame rows still run and print (tiny settings; the figures are in the README)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_first_frame_rows_run():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dream.py"), "--only", "f", "--repeats", "1",
                        "--layers", "panel", "--seeds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for row in ("| (f) s to first frame, fresh process", "| (f) s to first frame, fresh Probe",
                "| (f) s to first frame, Start again"):
        assert row in r.stdout, r.stdout[-3000:]
