"""The pytest plugin: the `lr_audit` fixture and `assert_lr_schedule`, run in a real inner pytest session."""
import subprocess
import sys

import pytest

from lraudit.integrations.pytest_plugin import assert_lr_schedule

from .conftest import ROOT

pytest_plugins = ["pytester"]


class FakeRun:
    """Just the two methods of a run that assert_lr_schedule reads."""

    def __init__(self, *groups):
        self._groups = [list(g) for g in groups]

    def lrs(self, group=0, optimizer=None):
        return list(self._groups[group])

    def series(self):
        return [("lr-SGD", "SGD", f"pg{i + 1}", g) for i, g in enumerate(self._groups)]


def test_assert_lr_schedule_accepts_sequences_callables_and_tolerance():
    run = FakeRun([0.1, 0.1, 0.05, 0.05], [1.0, 1.0, 0.5, 0.5])
    assert_lr_schedule(run, expect=[0.1, 0.1, 0.05, 0.05])
    assert_lr_schedule(run, expect=lambda step: 0.1 * 0.5 ** (step // 2))
    assert_lr_schedule(run, expect=lambda step: [0.1 * 0.5 ** (step // 2), 0.5 ** (step // 2)], group=1)
    assert_lr_schedule(run, expect=[0.1 * (1 + 1e-9)] * 2, prefix=True)
    with pytest.raises(AssertionError):
        assert_lr_schedule(run, expect=[0.1 * (1 + 1e-3)] * 2, prefix=True)
    assert_lr_schedule(run, expect=[0.1 * (1 + 1e-3)] * 2, rtol=1e-2, prefix=True)


def test_assert_lr_schedule_failure_is_a_readable_table():
    run = FakeRun([0.1, 0.1, 0.05, 0.05, 0.025])
    with pytest.raises(AssertionError) as info:
        assert_lr_schedule(run, expect=[0.1, 0.05, 0.05, 0.025])
    lines = str(info.value).splitlines()
    assert lines[0] == "LR schedule of lr-SGD differs from the expected one at 3 of 5 steps (rtol=1e-06, atol=0):"
    assert lines[1] == "  recorded 5 optimizer steps, expected 4"
    assert lines[2].split() == ["step", "expected", "actual", "rel.", "error"]
    assert lines[3].split() == ["1", "0.05", "0.1", "1"]
    assert lines[4].split() == ["3", "0.025", "0.05", "1"]
    assert lines[5].split() == ["4", "-", "0.025", "extra"]


def test_assert_lr_schedule_limits_the_table():
    run = FakeRun([0.2] * 30)
    with pytest.raises(AssertionError, match=r"and 20 more differing steps"):
        assert_lr_schedule(run, expect=[0.1] * 30)


def test_importing_the_plugin_and_the_cli_imports_no_torch():
    code = (
        "import sys, lraudit, lraudit.integrations.pytest_plugin, lraudit.cli_runtime, "
        "lraudit.integrations.lightning, lraudit.integrations.transformers\n"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', 'matplotlib', 'rich')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


INNER_TESTS = '''
import torch
import torch.optim.optimizer as torch_optimizer

from lraudit.integrations.pytest_plugin import assert_lr_schedule

STATE = {}


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def _train(model, opt, sched, steps):
    for _ in range(steps):
        opt.zero_grad()
        model(torch.ones(2, 3)).sum().backward()
        opt.step()
        sched.step()


def test_pinned_schedule(lr_audit):
    model, opt, sched = _setup()
    with lr_audit(opt) as run:
        _train(model, opt, sched, 4)
    assert run.findings == []
    assert lr_audit.run is run
    assert_lr_schedule(run, expect=[0.1, 0.1, 0.05, 0.05])
    lr_audit.assert_schedule(run, expect=lambda step: 0.1 * 0.5 ** (step // 2))


def test_wrong_schedule(lr_audit):
    model, opt, sched = _setup()
    with lr_audit(opt) as run:
        _train(model, opt, sched, 4)
    assert_lr_schedule(run, expect=[0.1, 0.05, 0.05, 0.025])


def test_started_and_left_running(lr_audit):
    model, opt, sched = _setup()
    run = lr_audit.start()  # every optimizer; the fixture stops it at teardown
    _train(model, opt, sched, 3)
    STATE["opt"] = opt
    assert run.lrs() == [0.1, 0.1, 0.05]


def test_teardown_removed_every_hook():
    opt = STATE["opt"]
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert not torch_optimizer._global_optimizer_pre_hooks and not torch_optimizer._global_optimizer_post_hooks
'''


def _plugin_args(config):
    # Installed (pip install -e .), pytest already loads the plugin from the pytest11 entry point.
    return [] if config.pluginmanager.has_plugin("lraudit") else ["-p", "lraudit.integrations.pytest_plugin"]


def test_fixture_in_a_real_pytest_session(pytester, pytestconfig):
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest(*_plugin_args(pytestconfig), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    assert "LR schedule of lr-SGD differs from the expected one at 2 of 4 steps" in out
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("E ") and line.split()[1:2] in (["1"], ["2"], ["3"])]
    assert rows == [["1", "0.05", "0.1", "1"], ["3", "0.025", "0.05", "1"]]
    # The failing test shows its LR report; the passing ones do not.
    assert "Captured lraudit call" in out
    assert out.count("lr-SGD (SGD, 4 optimizer steps)") == 1
