"""LR016: ranks compare their trajectories at the end of the audit.

The comparison logic is tested on hand-made per-rank summaries; the real thing runs two gloo
processes over 127.0.0.1 (tests/integrations/dist_worker.py and fixtures/runtime_scripts/train_ddp.py).
"""
import json
import os
import socket
import subprocess
import sys

import pytest

from lraudit.runtime.distributed import (compress, digest, divergences, first_difference, step_count_note,
                                         value_at)

from .conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


def test_compress_and_lookup():
    runs = compress([0.1, 0.1, 0.1, 0.05, 0.05, float("nan"), float("nan")])
    assert runs[:2] == [(0.1, 3), (0.05, 2)] and runs[2][1] == 2
    assert value_at(runs, 2) == 0.1 and value_at(runs, 3) == 0.05 and value_at(runs, 7) is None
    assert len(compress([1e-3] * 1_000_000)) == 1


@pytest.mark.parametrize(
    "a, b, expected",
    [([0.1] * 5, [0.1] * 5, None), ([0.1] * 5, [0.1] * 3 + [0.2] * 2, 3), ([0.1] * 5, [0.1] * 7, 5),
     ([0.1, 0.2, 0.2, 0.3], [0.1, 0.2, 0.3, 0.3], 2), ([], [0.1], 0), ([float("nan")] * 2, [float("nan")] * 2, None)],
)
def test_first_difference(a, b, expected):
    assert first_difference(compress(a), compress(b)) == expected
    assert first_difference(compress(b), compress(a)) == expected


def _summary(body, head, opt="lr-SGD"):
    return [(opt, "body", 0, compress(body)), (opt, "head", 1, compress(head))]


def test_divergences_name_the_first_step_and_group():
    body = [0.1] * 8
    head = [0.05] * 8
    rank0 = _summary(body, head)
    rank1 = _summary(body[:6] + [0.01] * 2, head[:3] + [0.005] * 5)  # head parts at index 3, body at 6
    assert divergences([rank0, rank0]) == []
    assert digest(rank0) == digest(_summary(list(body), list(head))) != digest(rank1)
    [d] = divergences([rank0, rank1])
    assert (d.optimizer, d.group_name, d.group_index, d.step, d.run) == ("lr-SGD", "head", 1, 3, None)
    assert d.values == [(0.05, [0]), (0.005, [1])]


def test_divergences_group_ranks_by_value_and_cover_missing_series():
    same = _summary([0.1] * 4, [0.1] * 4)
    odd = _summary([0.1] * 4, [0.1, 0.1, 0.2, 0.2])
    [d] = divergences([same, same, odd, same])
    assert (d.group_name, d.step, d.values) == ("head", 2, [(0.1, [0, 1, 3]), (0.2, [2])])
    one_group = [same[0]]  # rank 0 has the optimizer but not its group "head"
    [d] = divergences([one_group, same])
    assert (d.optimizer, d.group_name, d.step) == ("lr-SGD", "head", 0)
    assert d.values == [(None, [0]), (0.1, [1])]
    extra = same + [("lr-Adam", "pg1", 0, compress([1e-3] * 4))]
    # rank 0 never stepped lr-Adam: 0 steps on it (under Join, a rank with no batch), no divergence
    assert divergences([same, extra]) == []
    assert "lr-Adam: rank 0 took 0; rank 1 took 4" in step_count_note([same, extra])
    other = same + [("lr-Adam", "pg1", 0, compress([1e-3] * 2 + [5e-4] * 2))]
    [d] = divergences([extra, other])  # same step count: compared step by step
    assert (d.optimizer, d.step, d.run, d.values) == ("lr-Adam", 2, None, [(1e-3, [0]), (5e-4, [1])])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run dist_worker.py as ranks 0 and 1 on gloo over 127.0.0.1; return each rank's results."""
    pytest.importorskip("torch.distributed")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    outdir = tmp_path_factory.mktemp("dist")
    port, port2 = _free_port(), _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "dist_worker.py"), str(rank), str(port),
                               str(port2), str(outdir)], cwd=str(outdir), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    return [json.loads((outdir / f"rank{r}.json").read_text()) for r in (0, 1)], outdir, outputs


def test_ranks_that_agree_are_silent(two_ranks):
    (rank0, rank1), _, _ = two_ranks
    assert rank0["equal"] == [] and rank1["equal"] == []


def test_a_rank_with_another_lr_is_lr016_at_the_first_step_and_group(two_ranks):
    (rank0, rank1), _, _ = two_ranks
    lrs0, lrs1 = rank0["diverge_lrs"], rank1["diverge_lrs"]
    assert lrs0[1][:5] == lrs1[1][:5] and lrs0[1][5] != lrs1[1][5]  # the scenario: group 1 parts at index 5
    assert lrs0[0][:6] == lrs1[0][:6] and lrs0[0][6] != lrs1[0][6]
    for mine in (rank0, rank1):  # every rank reports it (so strict=True raises on all ranks together)
        [finding] = [f for f in mine["diverge"] if f["rule"] == "LR016"]
        assert (finding["optimizer"], finding["group"], finding["step"]) == ("lr-SGD", 1, 5)
        assert "rank 0 used 0.025; rank 1 used 0.123" in finding["message"]
        assert "lr-SGD/pg2" in finding["message"]
    assert [f["rule"] for f in rank0["diverge"]] == ["LR016"]
    assert "LR004" in {f["rule"] for f in rank1["diverge"]}  # rank 1's write touched one group of two


def test_lraudit_run_compares_ranks_before_the_script_destroys_its_group(two_ranks):
    (rank0, rank1), outdir, outputs = two_ranks
    assert rank0["runner_status"] == 0 and rank1["runner_status"] == 0
    saved0 = json.loads((outdir / "ddp.json").read_text())
    saved1 = json.loads((outdir / "ddp.rank1.json").read_text())
    lr016 = [f for f in saved0["findings"] if f["rule"] == "LR016"]
    assert len(lr016) == 1 and (lr016[0]["group"], lr016[0]["step"]) == (1, 3)
    assert "lr-SGD/head" in lr016[0]["message"]
    assert [f["rule"] for f in saved1["findings"] if f["rule"] == "LR016"] == ["LR016"]
    assert "LR002" in {f["rule"] for f in saved1["findings"]}  # rank 1 also wrote over its StepLR
    assert "LR016 rank-divergence" in outputs[0]  # rank 0 printed its report
