"""Interrupting a run never loses or misreports data.

``antibunch run scan_cnn`` (a small, paced scan) is interrupted mid-scan with SIGINT or SIGTERM
under every executor. Required: exit 130 (SIGINT) / 143 (SIGTERM) within a few seconds, no
"killed" step, the HDF5 file says ``antibunch_status = interrupted`` with the completed pixel
visits (more than none, fewer than the scan), the PNG of the partial image exists and is marked
PARTIAL (red headline; its text metadata say ``interrupted``), and the live view's last line
says "interrupted" with the true count. Also: a run that fails before acquisition leaves no
results file; an existing result is never overwritten without ``--overwrite``; a failed step
leaves ``antibunch_status = failed``.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import pytest

from .conftest import GRAPHS, cli_env

FAULTS = str(GRAPHS / "faults.py")
SHAPE, FRAMES, DWELL_S = (4, 4), 40, 0.05  # 640 pixel visits, paced: 32 s of scan
# a few seconds on an idle machine (the final PNG render dominates); generous for a loaded CI box
EXIT_BOUND_S = 60.0


def _png_text(path):
    from PIL import Image

    with Image.open(path) as im:
        return dict(im.text)


def _run(args, runtime_dir, cwd):
    return subprocess.Popen([sys.executable, "-m", "engine", "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(runtime_dir), cwd=cwd)


def interrupt_scan(tmp_path, runtime_dir, executor, sig, after_s=2.0):
    out = tmp_path / "scan.h5"
    png = tmp_path / "scan.png"
    ref = (f"scan_cnn:build(shape={SHAPE}, frames={FRAMES}, dwell_s={DWELL_S}, realtime=True, "
           f"out={str(out)!r}, png={str(png)!r})")
    p = _run([ref, "--executor", executor, "--no-live"], runtime_dir, tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not out.exists():  # the file appears with the first data: acquisition is under way
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the scan never started"
            time.sleep(0.05)
        time.sleep(after_s)
        assert p.poll() is None, "the scan ended before the signal: make it longer"
        t0 = time.monotonic()
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=120)
        exit_s = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, exit_s, stdout, stderr, out, png


@pytest.mark.parametrize("executor,sig", [
    ("processes", signal.SIGINT),
    pytest.param("processes", signal.SIGTERM, marks=pytest.mark.slow),
    pytest.param("threads", signal.SIGINT, marks=pytest.mark.slow),
    pytest.param("threads", signal.SIGTERM, marks=pytest.mark.slow),
    pytest.param("inline", signal.SIGINT, marks=pytest.mark.slow),
    ("inline", signal.SIGTERM),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else v)
def test_interrupt_scan_mid_run(tmp_path, runtime_dir, executor, sig):
    rc, exit_s, stdout, stderr, out, png = interrupt_scan(tmp_path, runtime_dir, executor, sig)
    print(f"{executor} {sig.name}: exit {rc} after {exit_s:.2f} s")
    assert rc == 128 + sig, (rc, stderr)
    assert "killed" not in stderr and "Traceback" not in stderr, stderr
    assert exit_s < EXIT_BOUND_S, f"exit took {exit_s:.1f} s after {sig.name}"
    total = SHAPE[0] * SHAPE[1] * FRAMES
    with h5py.File(out, "r") as f:
        assert f.attrs["antibunch_status"] == b"interrupted"
        visits = int(f.attrs["antibunch_pixel_visits_done"])
        assert 0 < visits < total
        assert int(f["user/antibunch/pixels"].attrs["n_done"]) == visits
    text = _png_text(png)
    assert text["antibunch_status"] == "interrupted"
    assert text["Description"].startswith("PARTIAL — run interrupted")
    assert 0 < int(text["antibunch_pixel_visits_done"]) <= visits
    ends = [ln for ln in stdout.splitlines() if ln.startswith("[scan_cnn] interrupted: pixels ")]
    assert len(ends) == 1 and ends[0].endswith("partial scan"), stdout[-2000:]
    assert "done:" not in stdout and "[scan_cnn] finished:" not in stdout


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_failure_before_acquisition_leaves_no_file(tmp_path, runtime_dir, executor):
    out = tmp_path / "never.h5"
    p = _run([f"{FAULTS}:build(out={str(out)!r}, fail_at_start=True)", "--executor", executor, "--no-live"],
             runtime_dir, tmp_path)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 1 and "did not start" in err, err
    assert not out.exists(), "a run that failed before acquisition left a results file"


def test_failed_step_recorded_in_file(tmp_path, runtime_dir):
    out = tmp_path / "failed.h5"
    p = _run([f"{FAULTS}:build(out={str(out)!r}, fail_at_seq=5)", "--executor", "inline"], runtime_dir, tmp_path)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 1 and "deliberate failure at seq 5" in err, err
    with h5py.File(out, "r") as f:
        assert f.attrs["antibunch_status"] == b"failed"
        assert f["photon_data/timestamps"].shape[0] > 0  # what arrived before the failure is kept


def test_existing_result_never_overwritten_silently(tmp_path, runtime_dir):
    out = tmp_path / "earlier.h5"
    out.write_bytes(b"an earlier result")
    ref = f"{FAULTS}:build(out={str(out)!r}, n_batches=3)"
    p = _run([ref, "--executor", "inline"], runtime_dir, tmp_path)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "exists" in err and "--overwrite" in err, err
    assert out.read_bytes() == b"an earlier result"
    p = _run([ref, "--executor", "inline", "--overwrite"], runtime_dir, tmp_path)
    _, err = p.communicate(timeout=180)
    assert p.returncode == 0, err
    with h5py.File(out, "r") as f:
        assert f.attrs["antibunch_status"] == b"finished"
