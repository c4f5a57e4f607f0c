"""Runtime-audit tests: every internal lraudit error is a test failure; no test leaves a wrapper behind."""
import pytest
import torch

from lraudit.runtime import patches


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/runtime" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(
                "error::lraudit.runtime.findings.LRAuditInternalWarning"))


@pytest.fixture(autouse=True)
def _no_leftover_audit():
    torch.manual_seed(0)
    yield
    assert patches.ACTIVE == [], "an audit was left running"
    assert patches._patched == [], "a class wrapper was left installed"
