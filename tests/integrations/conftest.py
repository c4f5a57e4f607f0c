import json
import math
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "fixtures" / "runtime_scripts"


def step_trajectory():
    """A hand-written trajectory file: a StepLR SGD and a two-group AdamW with a spike (LR002)."""
    sgd = [0.1 * 0.5 ** (i // 10) for i in range(50)]
    body = [1e-3 * min(1.0, (i + 1) / 10) * 0.5 * (1 + math.cos(math.pi * i / 50)) for i in range(50)]
    head = [2 * v for v in body]
    head[20] = 5e-3
    return {
        "version": 1,
        "optimizers": [
            {"name": "lr-SGD", "class": "SGD", "groups": [{"name": "pg1", "lr": sgd}], "steps": 50},
            {"name": "lr-AdamW", "class": "AdamW", "steps": 50,
             "groups": [{"name": "backbone", "lr": body}, {"name": "head", "lr": head}]},
        ],
        "findings": [
            {"rule": "LR002", "message": "the LR of group head changed before optimizer step 20 "
             "without a scheduler step", "step": 20, "group": 1, "optimizer": "lr-AdamW"},
        ],
    }


@pytest.fixture
def trajectory_file(tmp_path):
    path = tmp_path / "lr.json"
    path.write_text(json.dumps(step_trajectory()))
    return path
