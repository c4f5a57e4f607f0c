"""DDP over gloo with Join (uneven inputs), under `lraudit run`: workers started with mp.spawn and ranks
started by torchrun are audited, ranks that took different numbers of steps are compared by the sequence
of LR values they went through (no LR016 when one is a prefix of the other), and the processes end: each case runs repeatedly, each run under a timeout (a hang fails the test, it never
blocks the suite)."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from lraudit.runtime.distributed import bound_note, bounded, compress, divergences, step_count_note
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
    assert "rank 1 took 4; rank 0 took 6" in note and "compared the sequence of LR values" in note
    wrong = [("lr-SGD", "pg1", 0, compress([0.1, 0.2, 0.05, 0.05]))]
    [d] = divergences([rank0, wrong])
    assert (d.step, d.run, d.starts) == (1, 1, {0: 2, 1: 1})  # 0.1 -> 0.2 on rank 1 where rank 0 went to 0.05
    assert d.values == [(0.05, [0]), (0.2, [1])]


def _epochs(per_epoch, lrs=(0.1, 0.05, 0.025)):
    return [lr for lr in lrs for _ in range(per_epoch)]


def test_a_per_epoch_schedule_under_join_is_compared_by_its_values_not_by_index():
    """Join over 3 epochs: rank 1 joins after 4 updates of each epoch while rank 0 takes 6, so update 4
    is 0.1 on rank 0 and 0.05 on rank 1; both went through 0.1, 0.05, 0.025 (the QA report, issue 10)."""
    rank0 = [("lr-SGD", "pg1", 0, compress(_epochs(6)))]
    rank1 = [("lr-SGD", "pg1", 0, compress(_epochs(4)))]
    assert divergences([rank0, rank1]) == [] and divergences([rank1, rank0]) == []
    assert "lr-SGD: rank 1 took 12; rank 0 took 18" in step_count_note([rank0, rank1])
    other_gamma = [("lr-SGD", "pg1", 0, compress(_epochs(4, (0.1, 0.025, 0.00625))))]
    [d] = divergences([rank0, other_gamma])
    assert (d.optimizer, d.group_index, d.run, d.starts, d.step) == ("lr-SGD", 0, 1, {0: 6, 1: 4}, 4)
    assert d.values == [(0.05, [0]), (0.025, [1])]
    # equal step counts keep the step-by-step comparison: a shifted boundary is a divergence
    shifted = [("lr-SGD", "pg1", 0, compress([0.1] * 5 + [0.05] * 7 + [0.025] * 6))]
    [d] = divergences([rank0, shifted])
    assert (d.step, d.run, d.values) == (5, None, [(0.1, [0]), (0.05, [1])])


def test_uneven_ranks_part_where_no_sequence_is_a_prefix_of_the_longest():
    a, b, c, d = 0.1, 0.09, 0.081, 0.05
    ranks = [[("lr-SGD", "pg1", 0, compress(seq))] for seq in ([a, b, c, c], [a, b], [a, b, d], [a])]
    [div] = divergences(ranks)
    # rank 1 and rank 3 ended before run 2: they agree with both and are not listed
    assert (div.run, div.starts, div.values, div.step) == (2, {0: 2, 2: 2}, [(c, [0]), (d, [2])], 2)
    assert divergences([ranks[0], ranks[1], ranks[3]]) == []
    nan = float("nan")
    assert divergences([[("lr-SGD", "pg1", 0, compress([a, nan, nan]))],
                        [("lr-SGD", "pg1", 0, compress([a, nan]))]]) == []


def test_the_exchanged_series_are_bounded_and_the_note_says_so():
    per_step = [0.1 * 0.99 ** k for k in range(10)]
    rank0 = [("lr-SGD", "pg1", 0, compress(per_step))]
    rank1 = [("lr-SGD", "pg1", 0, compress(per_step[:7]))]
    cut0, cut1 = bounded(rank0, limit=4), bounded(rank1, limit=4)
    assert cut0 == [("lr-SGD", "pg1", 0, compress(per_step[:4]), 10)]
    assert "rank 1 took 7; rank 0 took 10" in step_count_note([cut0, cut1])  # true counts, not the cut ones
    assert divergences([cut0, cut1]) == []
    assert "first 4 LR changes" in bound_note([cut0, cut1], limit=4) and "lr-SGD/pg1 (ranks 0-1)" in bound_note(
        [cut0, cut1], limit=4)
    assert bounded(rank0) == rank0 and bound_note([rank0, rank1]) is None
    wrong = [("lr-SGD", "pg1", 0, compress(per_step[:2] + [0.5] * 5))]
    [d] = divergences([cut0, bounded(wrong, limit=4)])  # a parting inside the bound is still found
    assert (d.run, d.values) == (2, [(per_step[2], [0]), (0.5, [1])])


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


def test_join_over_epochs_compares_schedules_not_update_indices(tmp_path):
    """Three epochs, one Join block each, rank 0 takes 6 updates per epoch and rank 1 takes 4: a per-epoch
    StepLR and a per-update LambdaLR are silent but the note; rank 1 with another gamma or another base LR
    is LR016 on both ranks, with the values each rank's own pre-hook saw."""
    _gloo()
    cmd = [sys.executable, str(SCRIPTS / "train_ddp_join_epochs.py"), str(tmp_path), str(_free_port())]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [json.loads((tmp_path / f"epochs{r}.json").read_text()) for r in (0, 1)]
    for rank, results in enumerate(ranks):
        for scenario in results.values():
            assert scenario["lrs"] == scenario["seen"]  # lraudit's record against the script's pre-hook
            assert any("rank 1 took 12; rank 0 took 18" in n for n in scenario["notes"])
        updates = 6 if rank == 0 else 4
        gamma = 0.25 if rank == 1 else 0.5
        assert results["epoch"]["seen"] == [0.1 * 0.5 ** (k // updates) for k in range(3 * updates)]
        assert results["epoch_gamma"]["seen"] == [0.1 * gamma ** (k // updates) for k in range(3 * updates)]
        assert results["per_step"]["seen"] == ranks[0]["per_step"]["seen"][:3 * updates]
        assert results["epoch"]["findings"] == [] and results["per_step"]["findings"] == []

    seen = [r["epoch_gamma"]["seen"] for r in ranks]
    assert seen[0][6] != seen[1][4]  # the second LR of the schedule differs
    for results in ranks:  # every rank reports it (strict=True raises on all ranks together)
        [f] = results["epoch_gamma"]["findings"]
        assert (f["rule"], f["step"]) == ("LR016", 4)
        assert f"rank 0 used {seen[0][6]:.6g} from step 6; rank 1 used {seen[1][4]:.6g} from step 4" in f["message"]
    seen = [r["per_step_lr"]["seen"] for r in ranks]
    assert seen[0][0] != seen[1][0]
    for results in ranks:
        [f] = results["per_step_lr"]["findings"]
        assert (f["rule"], f["step"]) == ("LR016", 0)
        assert f"rank 0 used {seen[0][0]:.6g} from step 0; rank 1 used {seen[1][0]:.6g} from step 0" in f["message"]
