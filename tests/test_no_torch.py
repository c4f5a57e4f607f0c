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
