"""`import lraudit` and `lraudit check` work where torch cannot be imported."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from test_engine import BUGGY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test ({name})")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "LRAUDIT_CACHE_DIR": str(cwd / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_blocker_really_blocks(tmp_path):
    proc = run_blocked("import torch", tmp_path)
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_import_and_check_without_torch(tmp_path):
    (tmp_path / "train.py").write_text(BUGGY)
    proc = run_blocked(
        """
        import sys
        import lraudit
        from lraudit.cli import main
        assert "torch" not in sys.modules
        sys.argv = ["lraudit", "check", "--format", "json", "train.py"]
        try:
            main()
        except SystemExit as exc:
            assert "torch" not in sys.modules, "lraudit check imported torch"
            print("EXIT", exc.code, file=sys.stderr)
        """,
        tmp_path,
    )
    assert "EXIT 1" in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    assert [f["rule"] for f in data["findings"]] == ["LR001"]
    assert data["errors"] == []


NOT_INSTALLED = BLOCKER.replace(
    'raise ImportError(f"torch is blocked in this test ({name})")',
    'raise ModuleNotFoundError(f"No module named {name!r}", name=name)',  # what a missing package raises
)


def _run_cli(prelude: str, args: list, cwd: Path) -> subprocess.CompletedProcess:
    code = prelude + textwrap.dedent(
        f"""
        import sys
        from lraudit.cli import main
        sys.argv = ["lraudit", *{args!r}]
        main()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_run_without_torch_says_which_extra_to_install(tmp_path):
    (tmp_path / "train.py").write_text("print('the script must not run')\n")
    proc = _run_cli(NOT_INSTALLED, ["run", "--out", "lr.json", "train.py"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "lraudit run: needs PyTorch, which is not installed: pip install 'torch-lraudit[runtime]'"
    ]
    assert proc.stdout == "" and not (tmp_path / "lr.json").exists()


def test_run_with_a_broken_torch_is_one_line_too(tmp_path):
    (tmp_path / "train.py").write_text("print('the script must not run')\n")
    proc = _run_cli(BLOCKER, ["run", "train.py"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("lraudit run: torch is installed but cannot be imported: ImportError: torch is blocked")
    assert proc.stdout == ""


def test_audit_import_without_torch_names_the_extra(tmp_path):
    code = NOT_INSTALLED + textwrap.dedent(
        """
        try:
            from lraudit import audit
        except ModuleNotFoundError as exc:
            print(exc.name, "|", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.strip() == (
        "torch | lraudit.audit needs PyTorch, which is not installed: pip install 'torch-lraudit[runtime]'"
    ), proc.stderr
