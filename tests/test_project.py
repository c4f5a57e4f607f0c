"""The project layer (analysis/project.py, summaries.py): resolution of imports to the project's
files, summaries, bounds, and what the engine reads and caches because of them."""
from __future__ import annotations

import textwrap
from pathlib import Path

from lraudit.analysis import project as P
from lraudit.analysis.summaries import summarise
from lraudit.checks import check_source
from lraudit.config import resolve_settings
from lraudit.engine import check_paths

# The helper's name says nothing of training: only reading engine.py shows that it steps the optimizer
# (a helper named ``train...`` is a place the optimizer may step even unread).
TRAIN = """\
import torch
from {module} import run_epoch


def main(model, loader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
    for epoch in range(epochs):
        scheduler.step()
        run_epoch(model, loader, optimizer)
"""
ENGINE = """\
def run_epoch(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        model(x, y).backward()
        optimizer.step()
"""


def _write(root: Path, files: dict) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _rules(path: Path, **kw):
    return [(f.line, f.rule) for f in check_source(path.read_text(encoding="utf-8"), str(path), **kw)]


def test_absolute_import_of_a_sibling_module(tmp_path):
    _write(tmp_path, {"setup.py": "", "train.py": TRAIN.format(module="engine"), "engine.py": ENGINE})
    assert _rules(tmp_path / "train.py") == [(9, "LR001")]
    # Without the project, the imported helper is only a place the optimizer may step.
    assert _rules(tmp_path / "train.py", project=False) == []


def test_relative_import_inside_a_package(tmp_path):
    _write(tmp_path, {"pyproject.toml": "", "pkg/__init__.py": "", "pkg/train.py": TRAIN.format(module=".engine"),
                      "pkg/engine.py": ENGINE})
    assert _rules(tmp_path / "pkg" / "train.py") == [(9, "LR001")]


def test_absolute_import_resolved_at_an_ancestor_and_in_src(tmp_path):
    _write(tmp_path, {"pyproject.toml": "", "scripts/train.py": TRAIN.format(module="proj.engine"),
                      "src/proj/__init__.py": "", "src/proj/engine.py": ENGINE})
    assert _rules(tmp_path / "scripts" / "train.py") == [(9, "LR001")]


def test_reexport_through_a_package_init_is_followed(tmp_path):
    _write(tmp_path, {"setup.cfg": "", "train.py": TRAIN.format(module="lib"),
                      "lib/__init__.py": "from .loops import run_epoch\n", "lib/loops.py": ENGINE})
    assert _rules(tmp_path / "train.py") == [(9, "LR001")]


def test_resolution_stops_at_the_project_root(tmp_path):
    # engine.py lies above the root (the folder with setup.py): not part of this project.
    _write(tmp_path, {"engine.py": ENGINE, "proj/setup.py": "", "proj/train.py": TRAIN.format(module="engine")})
    assert _rules(tmp_path / "proj" / "train.py") == []


def test_missing_unparseable_and_cyclic_modules_stay_unknown(tmp_path):
    _write(tmp_path, {
        "setup.py": "",
        "train.py": TRAIN.format(module="engine"),
        "engine.py": "from engine import run_epoch\n",  # imports itself: a cycle of one
        "broken.py": "def run_epoch(:\n",
        "other.py": TRAIN.format(module="broken"),
        "third.py": TRAIN.format(module="missing_module"),
    })
    for name in ("train.py", "other.py", "third.py"):
        assert _rules(tmp_path / name) == []


def test_call_cycle_across_modules_terminates(tmp_path):
    _write(tmp_path, {
        "setup.py": "",
        "a.py": "from b import g\n\ndef f(opt, n):\n    g(opt, n)\n    opt.step()\n",
        "b.py": "from a import f\n\ndef g(opt, n):\n    f(opt, n)\n",
        "train.py": textwrap.dedent("""\
            import torch
            from a import f


            def main(model):
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
                for epoch in range(10):
                    scheduler.step()
                    f(optimizer, epoch)
            """),
    })
    assert _rules(tmp_path / "train.py") == [(9, "LR001")]


def test_summary_facts():
    summary = summarise(textwrap.dedent("""\
        import torch
        from torch.optim.lr_scheduler import LambdaLR, StepLR
        from .utils import helper

        TABLE = {"step": StepLR}

        class Warm(LambdaLR):
            def __init__(self, optimizer, n):
                super().__init__(optimizer, lambda s: min(1.0, s / n))

        def build(model):
            return torch.optim.AdamW(model.parameters())

        def train(model, optimizer, scaler, loader):
            for batch in loader:
                scaler.step(optimizer)
                optimizer.param_groups[0]["lr"] = 0.1

        def unrelated(x):
            return x + 1
        """))
    assert summary.imports["helper"] == ".utils.helper"
    assert summary.tables == {"TABLE"}
    assert summary.classes["Warm"].bases == ["torch.optim.lr_scheduler.LambdaLR"]
    assert summary.constructs("Warm") and summary.constructs("build") and summary.constructs("TABLE")
    assert not summary.constructs("train")
    assert summary.functions["train"].touches == {"optimizer": ["param_groups", "step"]}
    assert summary.functions["unrelated"].idle and not summary.functions["train"].idle
    assert summary.offers("train") and not summary.offers("unrelated")
    assert summarise("def broken(:\n") is None


def test_one_file_of_a_large_project_reads_only_what_it_imports(tmp_path):
    files = {"setup.py": "", "train.py": TRAIN.format(module="engine"), "engine.py": ENGINE}
    for index in range(500):
        files[f"pkg/mod{index}.py"] = f"import torch\n\ndef f{index}(optimizer):\n    optimizer.step()\n"
    _write(tmp_path, files)
    reads: dict = {}
    check_source((tmp_path / "train.py").read_text(), str(tmp_path / "train.py"), reads=reads)
    assert set(reads) == {str(tmp_path / "engine.py")}


def test_bound_on_modules_read(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "MAX_MODULES", 3)
    chain = {"setup.py": "", "train.py": TRAIN.format(module="m0")}
    for index in range(6):  # m0 re-exports from m1, ... m5 defines it
        chain[f"m{index}.py"] = f"from m{index + 1} import run_epoch\n" if index < 5 else ENGINE
    _write(tmp_path, chain)
    project = P.Project(str(tmp_path / "train.py"))
    assert project.definition("m0.run_epoch", project.home) is None
    assert project.bounded and len(project.reads) <= 3


def test_cached_result_is_invalidated_when_an_imported_module_changes(tmp_path, monkeypatch):
    from lraudit import checks

    analysed = []
    original = checks.analyse_source
    monkeypatch.setattr(checks, "analyse_source", lambda *a, **kw: analysed.append(a[1]) or original(*a, **kw))
    _write(tmp_path, {"setup.py": "", "train.py": TRAIN.format(module="engine"),
                      "engine.py": "def run_epoch(model, loader, optimizer):\n    pass\n"})
    settings = resolve_settings([str(tmp_path)], isolated=True)
    cache_dir = str(tmp_path / "cache")

    def run():
        return [f.rule for f in check_paths([str(tmp_path / "train.py")], settings, cache_dir=cache_dir,
                                            jobs=1).findings]

    assert run() == [] and len(analysed) == 1
    assert run() == [] and len(analysed) == 1  # served from the cache: engine.py is unchanged
    (tmp_path / "engine.py").write_text(ENGINE, encoding="utf-8")  # now it steps the optimizer
    assert run() == ["LR001"] and len(analysed) == 2
    assert run() == ["LR001"] and len(analysed) == 2


def test_finding_on_another_modules_code_is_reported_once(tmp_path):
    """A bug engine.py holds by itself is engine.py's finding: train.py does not repeat it."""
    _write(tmp_path, {
        "setup.py": "",
        "engine.py": textwrap.dedent("""\
            import torch

            def fit(model, loader):
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
                for epoch in range(3):
                    scheduler.step()
                    for x in loader:
                        optimizer.step()
            """),
        "train.py": "import torch\nfrom engine import fit\n\ndef main(model, loader):\n    fit(model, loader)\n",
    })
    settings = resolve_settings([str(tmp_path)], isolated=True)
    result = check_paths([str(tmp_path)], settings, use_cache=False, jobs=1)
    assert [(Path(f.path).name, f.line, f.rule) for f in result.findings] == [("engine.py", 7, "LR001")]


def test_what_another_module_does_to_the_scheduler_is_seen(tmp_path):
    """yolov5's layout: hpo.py calls train() of train.py, which resumes through a helper of utils.py
    and repositions its scheduler by hand (``last_epoch``). Reading train.py from hpo.py must see the
    repositioning too: no finding in either file."""
    _write(tmp_path, {
        "setup.py": "",
        "utils.py": textwrap.dedent("""\
            def smart_resume(ckpt, optimizer, epochs):
                optimizer.load_state_dict(ckpt["optimizer"])
                return ckpt["epoch"] + 1
            """),
        "train.py": textwrap.dedent("""\
            import torch
            from torch.optim import lr_scheduler
            from utils import smart_resume


            def train(hyp, opt, model, loader):
                optimizer = torch.optim.SGD(model.parameters(), lr=hyp["lr0"])
                scheduler = lr_scheduler.LambdaLR(optimizer, lambda x: 1 - x / opt.epochs)
                start_epoch = 0
                if opt.resume:
                    start_epoch = smart_resume(torch.load(opt.weights), optimizer, opt.epochs)
                scheduler.last_epoch = start_epoch - 1  # do not move
                for epoch in range(start_epoch, opt.epochs):
                    for x, y in loader:
                        model(x, y).backward()
                        optimizer.step()
                    scheduler.step()
                    torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, "last.pt")
            """),
        "hpo.py": "from train import train\n\n\ndef run(hyp, opt, model, loader):\n    train(hyp, opt, model, loader)\n",
    })
    assert _rules(tmp_path / "train.py") == []
    assert _rules(tmp_path / "hpo.py") == []
    # the same helper without the repositioning: train.py's own finding, reported there only
    train = (tmp_path / "train.py").read_text().replace("    scheduler.last_epoch = start_epoch - 1  # do not move\n", "")
    (tmp_path / "train.py").write_text(train)
    assert {rule for _, rule in _rules(tmp_path / "train.py")} >= {"LR019"}
    assert _rules(tmp_path / "hpo.py") == []


def test_without_a_root_marker_the_outermost_package_is_the_root(tmp_path, monkeypatch):
    """An unpacked wheel checked from elsewhere: ``from pkg.engine import ...`` in ``pkg/train.py``
    still resolves (the root is the folder holding the package)."""
    _write(tmp_path / "wheel", {"pkg/__init__.py": "", "pkg/train.py": TRAIN.format(module="pkg.engine"),
                                "pkg/engine.py": ENGINE})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _rules(tmp_path / "wheel" / "pkg" / "train.py") == [(9, "LR001")]


# A scheduler class of the project whose torch base is several classes (and modules) away; the file
# that uses it names no torch scheduler itself (monai's ExponentialLR(_LRSchedulerMONAI(_LRScheduler))).
RANGE_TEST = """\
from sched_{tail} import RangeLR


def train(optimizer, loader):
    schedule = RangeLR(optimizer)
    for x in loader:
        schedule.step()
        optimizer.step()
"""


def _hierarchy(hops: int) -> dict:
    """RangeLR -> Base1 -> ... -> torch's _LRScheduler, one class per module."""
    files = {"setup.py": "", "train.py": RANGE_TEST.format(tail=0)}
    for level in range(hops):
        base = ("torch.optim.lr_scheduler", "_LRScheduler") if level == hops - 1 else (f"sched_{level + 1}", f"Base{level + 1}")
        name = "RangeLR" if level == 0 else f"Base{level}"
        files[f"sched_{level}.py"] = f"from {base[0]} import {base[1]}\n\n\nclass {name}({base[1]}):\n    pass\n"
    return files


def test_a_scheduler_class_several_bases_away_from_torch_is_known(tmp_path):
    _write(tmp_path, _hierarchy(4))
    assert _rules(tmp_path / "train.py") == [(7, "LR001")]


def test_a_class_hierarchy_beyond_the_hop_bound_or_cyclic_stays_unknown(tmp_path):
    _write(tmp_path / "deep", _hierarchy(12))
    assert _rules(tmp_path / "deep" / "train.py") == []
    _write(tmp_path / "cycle", {
        "setup.py": "", "train.py": RANGE_TEST.format(tail=0),
        "sched_0.py": "from sched_1 import Base\n\n\nclass RangeLR(Base):\n    pass\n",
        "sched_1.py": "from sched_0 import RangeLR\n\n\nclass Base(RangeLR):\n    pass\n",
    })
    assert _rules(tmp_path / "cycle" / "train.py") == []
