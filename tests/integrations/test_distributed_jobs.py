"""DDP over gloo with Join (uneven inputs), under `lraudit run`: workers started with mp.spawn and ranks
started by torchrun are audited, only the steps every rank took are compared (no LR016), and the
processes end: each case runs repeatedly, each run under a timeout (a hang fails the test, it never
blocks the suite)."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from lraudit.runtime.distributed import compress, divergences, step_count_note
from lraudit.runtime.trajectory_report import iter_series

from .conftest import ROOT, SCRIPTS

TIMEOUT = 150
REPEATS = 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"), OMP_NUM_THREADS="1",
                PYTHONFAULTHANDLER="1")


def _gloo():
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")


def test_a_rank_that_took_fewer_steps_is_no_divergence():
    rank0 = [("lr-SGD", "pg1", 0, compress([0.1, 0.1, 0.05, 0.05, 0.025, 0.025]))]
    rank1 = [("lr-SGD", "pg1", 0, compress([0.1, 0.1, 0.05, 0.05]))]
    assert divergences([rank0, rank1]) == []
    note = step_count_note([rank0, rank1])
    assert "rank 1 took 4; rank 0 took 6" in note and "compared only the steps every rank took" in note
    wrong = [("lr-SGD", "pg1", 0, compress([0.1, 0.2, 0.05, 0.05]))]
    [(_, _, _, step, _)] = divergences([rank0, wrong])
    assert step == 1  # a difference inside the common steps is still LR016


def _check_outputs(tmp_path, output):
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in (0, 1)]
    assert seen[0] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025] and seen[1] == seen[0][:4]
    for rank, name in enumerate(("lr.json", "lr.rank1.json")):
        saved = json.loads((tmp_path / name).read_text())
        [series] = iter_series(saved)  # the file's own reader (any trajectory version)
        assert series.lrs == seen[rank]
        assert saved["findings"] == []
    assert "LR016 rank-divergence" not in output
    assert "different numbers of optimizer steps" in output


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_mp_spawn_workers_with_join_are_audited_and_exit(tmp_path, attempt):
    _gloo()
    cmd = [sys.executable, "-m", "lraudit", "run", "--strict", "--out", str(tmp_path / "lr.json"),
           str(SCRIPTS / "train_ddp_join.py"), str(tmp_path), "--spawn", str(_free_port())]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "2 spawned worker(s) audited, 0 finding(s)" in output
    assert "spawned worker 0 (rank 0)" in output  # rank 0 printed its report
    _check_outputs(tmp_path, output)


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_torchrun_ddp_with_join_under_lraudit_run_exits(tmp_path, attempt):
    _gloo()
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun is not installed")
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "--no-python",
           sys.executable, "-m", "lraudit", "run", "--strict", "--out", str(tmp_path / "lr.json"),
           str(SCRIPTS / "train_ddp_join.py"), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    _check_outputs(tmp_path, output)


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_audit_inside_mp_spawn_workers_with_join_exits_cleanly(tmp_path, attempt):
    """Each worker runs its own `with audit(opt)`; the ranks compare at its end through the rendezvous
    store (a gloo all_gather left work whose destructor could abort the worker at exit)."""
    _gloo()
    cmd = [sys.executable, str(SCRIPTS / "train_ddp_join.py"), str(tmp_path), "--spawn", str(_free_port()), "--audit"]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "terminate called" not in output
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in (0, 1)]
    audited = [json.loads((tmp_path / f"audit{r}.json").read_text()) for r in (0, 1)]
    assert [a["lrs"] for a in audited] == seen and [a["findings"] for a in audited] == [[], []]
    assert "different numbers of optimizer steps" in output
