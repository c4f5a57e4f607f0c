"""One rank of the two-process gloo test (test_distributed.py). Not a test module.

argv: rank port port2 outdir. Writes outdir/rank{rank}.json with the findings of three scenarios:
equal trajectories, a rank-1-only LR write (audit() stopped while the group is alive), and
fixtures/runtime_scripts/train_ddp.py --diverge under `lraudit run` (which destroys its group).
"""
import json
import os
import sys

import torch
import torch.distributed as dist

from lraudit.runtime import audit
from lraudit.runtime.runner import run_script

rank, port, port2, outdir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "runtime_scripts")


def train(diverge):
    torch.manual_seed(0)
    w1, w2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([{"params": [w1]}, {"params": [w2], "lr": 0.05}], lr=0.1)
    for step in range(8):
        if step and step % 3 == 0:  # a manual schedule, the same on every rank: legitimate
            for group in opt.param_groups:
                group["lr"] *= 0.5
        if diverge and rank == 1 and step == 5:
            opt.param_groups[1]["lr"] = 0.123  # group 1 parts first (update index 5) ...
        if diverge and rank == 1 and step == 6:
            opt.param_groups[0]["lr"] = 0.321  # ... group 0 one update later
        opt.zero_grad()
        loss = (w1 * w2).sum()
        loss.backward()
        opt.step()


def findings(run):
    return [{"rule": f.rule, "step": f.step, "group": f.group, "optimizer": f.optimizer, "message": f.message}
            for f in run.findings]


dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
results = {}
with audit() as run:
    train(diverge=False)
results["equal"] = findings(run)
with audit() as run:
    train(diverge=True)
results["diverge"] = findings(run)
results["diverge_lrs"] = [run.lrs(group=0), run.lrs(group=1)]
dist.destroy_process_group()

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port2), RANK=str(rank), WORLD_SIZE="2")
results["runner_status"] = run_script(
    os.path.join(SCRIPTS, "train_ddp.py"), ["--diverge"], out=os.path.join(outdir, "ddp.json")
)
with open(os.path.join(outdir, f"rank{rank}.json"), "w") as fh:
    json.dump(results, fh)
