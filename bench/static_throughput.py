"""Throughput of `lraudit check` on a large real tree, against bare libcst parsing and TorchFix.

    python bench/static_throughput.py                      # the installed torch package
    python bench/static_throughput.py --tree PATH [--tree PATH ...]
    python bench/static_throughput.py --site-packages      # all of site-packages
    python bench/static_throughput.py --limit 400          # a deterministic subset, for a quick look

All in one run, on one file list (the one lraudit's discovery yields for the trees):
  1. lraudit cold   : check_paths() with an empty cache, --jobs N (default: all cores)
  2. lraudit warm   : the same again, served from the cache
  3. bare libcst    : libcst.parse_module() of the files lraudit parses (those passing the prefilter),
                      and of every file (or of a sample with --bare-sample, extrapolated), one core
  4. TorchFix       : `torchfix --select ALL` on the same files, same jobs, installed into its own venv
                      (bench/.venv-torchfix; never a dependency of lraudit). --no-torchfix skips it.
  5. ast.parse      : Python's own parser on every file, one core (the cold run's CPU budget: <= 1x)
  6. project reads  : one entry file of a generated 500-module project named alone (what pre-commit
                      does): how many other modules the project model reads (only what it imports,
                      transitively); ``--entry FILE`` (repeatable) adds real entry files.
Prints files/s, lines/s, CPU seconds, and the ratios DESIGN.md section 5 holds us to. Times are
measured, never asserted.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lraudit.config import resolve_settings  # noqa: E402
from lraudit.discovery import discover  # noqa: E402
from lraudit.engine import check_paths, default_jobs  # noqa: E402


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timer:
    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


def default_tree() -> List[str]:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("torch is not installed: pass --tree PATH")
    return [list(spec.submodule_search_locations)[0]]


def site_packages() -> List[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def collect(trees: Sequence[str], limit: int) -> List[str]:
    settings = resolve_settings(list(trees), isolated=True)
    files, _ = discover(list(trees), settings)
    paths = [f.path for f in files if f.path.endswith(".py")]
    if limit and len(paths) > limit:
        step = len(paths) / limit
        paths = [paths[int(i * step)] for i in range(limit)]
    return paths


def measure(paths: List[str]) -> Tuple[int, int]:
    lines = size = 0
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        lines += data.count(b"\n")
        size += len(data)
    return lines, size


def bare_parse(paths: List[str]) -> Tuple[float, int]:
    import libcst

    failures = 0
    with Timer() as t:
        for p in paths:
            with open(p, "rb") as fh:
                data = fh.read()
            try:
                libcst.parse_module(data)
            except Exception:  # noqa: BLE001
                failures += 1
    return t.cpu, failures


def analyse_in_process(paths: List[str]) -> float:
    """CPU of the per-file core (prescan, libcst parse, model, every rule) on these files, one core:
    what the analysis adds on top of the parse, without discovery, cache or process pool."""
    from lraudit.checks import check_source
    from lraudit.file_reading import decode_source

    with Timer() as t:
        for p in paths:
            with open(p, "rb") as fh:
                data = fh.read()
            try:
                check_source(decode_source(data).text, p)
            except Exception:  # noqa: BLE001 - parse errors are counted by bare_parse
                pass
    return t.cpu


def ast_parse(paths: List[str]) -> float:
    import ast

    with Timer() as t:
        for p in paths:
            with open(p, "rb") as fh:
                data = fh.read()
            try:
                ast.parse(data)
            except (SyntaxError, ValueError):
                pass
    return t.cpu


_ENTRY = """\
import torch
from engine import train_one_epoch
from utils.scheduler import WarmupLR


def main(model, loader, epochs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = WarmupLR(optimizer, 10)
    for epoch in range(epochs):
        train_one_epoch(model, loader, optimizer, scheduler)
"""
_ENGINE = """\
from utils.meters import log


def train_one_epoch(model, loader, optimizer, scheduler):
    for x, y in loader:
        optimizer.step()
        scheduler.step()
        log(optimizer)
"""
_SCHEDULER = """\
from torch.optim.lr_scheduler import LambdaLR


class WarmupLR(LambdaLR):
    def __init__(self, optimizer, warmup):
        super().__init__(optimizer, lambda s: min(1.0, (s + 1) / warmup))
"""


def project_reads(extra_entries: Sequence[str]) -> None:
    """Modules read when one entry file is named alone: a generated 500-module project, then any
    real entry files given."""
    from lraudit.checks import check_source
    from lraudit.file_reading import decode_source

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "setup.py").write_text("")
        (root / "utils").mkdir()
        (root / "utils" / "__init__.py").write_text("")
        (root / "train.py").write_text(_ENTRY)
        (root / "engine.py").write_text(_ENGINE)
        (root / "utils" / "scheduler.py").write_text(_SCHEDULER)
        (root / "utils" / "meters.py").write_text("def log(optimizer):\n    print(optimizer.param_groups[0]['lr'])\n")
        (root / "models").mkdir()
        for index in range(495):  # the rest of the project: never imported by train.py
            (root / "models" / f"m{index}.py").write_text(
                f"import torch\nfrom engine import train_one_epoch\n\ndef f{index}(opt):\n    opt.step()\n")
        total = len(list(root.rglob("*.py")))
        reads: dict = {}
        with Timer() as t:
            check_source(_ENTRY, str(root / "train.py"), reads=reads)
        print(f"  one file of a {total}-module project, named alone: reads {len(reads)} other modules "
              f"({', '.join(sorted(os.path.relpath(r, tmp) for r in reads))}), {t.cpu * 1000:.0f} ms CPU")
    for entry in extra_entries:
        reads = {}
        with Timer() as t:
            check_source(decode_source(open(entry, "rb").read()).text, entry, reads=reads)
        print(f"  {entry}: reads {len(reads)} other modules, {t.cpu * 1000:.0f} ms CPU")


def torchfix_exe(venv: Path) -> str:
    exe = venv / "bin" / "torchfix"
    if exe.exists():
        return str(exe)
    found = shutil.which("torchfix")
    if found:
        return found
    print(f"installing torchfix into {venv} (bench only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "torchfix"], check=True)
    return str(exe)


def run_torchfix(exe: str, paths: List[str], jobs: int) -> Timer:
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "files"
        listing.write_text("\n".join(paths))
        with Timer() as t:
            # xargs keeps one torchfix process when the list fits on a command line (it does here)
            subprocess.run(
                f"xargs -d '\\n' -a {listing} {exe} --select ALL -j {jobs} > /dev/null 2>&1",
                shell=True,
                check=False,
            )
    return t


def fmt_rate(n: float, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds > 0 else "inf"


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", help="directory to lint (repeatable); default: installed torch")
    ap.add_argument("--site-packages", action="store_true", help="lint all of site-packages")
    ap.add_argument("--jobs", type=int, default=default_jobs())
    ap.add_argument("--limit", type=int, default=0, help="at most this many files (evenly spread)")
    ap.add_argument("--bare-sample", type=int, default=0,
                    help="parse only this many of all files for the all-files libcst baseline (extrapolated)")
    ap.add_argument("--no-torchfix", action="store_true")
    ap.add_argument("--torchfix-venv", default=str(ROOT / "bench" / ".venv-torchfix"))
    ap.add_argument("--entry", action="append", default=[], help="a real entry file: count the modules it reads")
    args = ap.parse_args(list(argv) or None)

    trees = args.tree or (site_packages() if args.site_packages else default_tree())
    paths = collect(trees, args.limit)
    lines, size = measure(paths)
    print(f"tree: {', '.join(trees)}")
    print(f"files: {len(paths):,}  lines: {lines:,}  bytes: {size:,}  jobs: {args.jobs}  cores: {os.cpu_count()}")

    from lraudit.analysis import may_contain_findings

    passed = [p for p in paths if may_contain_findings(open(p, "rb").read())]
    passed_lines, _ = measure(passed)
    print(f"text prefilter passes {len(passed):,} files ({passed_lines:,} lines)")
    parsed = passed
    try:  # the analysis core's second, cheaper-than-libcst screen, when it has one
        from lraudit.checks import prescan
    except ImportError:
        prescan = None
    if prescan is not None:
        from lraudit.file_reading import decode_source

        def parsed_by_libcst(p: str) -> bool:
            try:
                scan = prescan(decode_source(open(p, "rb").read()).text)
            except Exception:  # noqa: BLE001
                return True
            return scan is None or bool(getattr(scan, "relevant", True))

        parsed = [p for p in passed if parsed_by_libcst(p)]
    parsed_lines, _ = measure(parsed)
    print(f"libcst parses {len(parsed):,} files ({parsed_lines:,} lines)")

    settings = resolve_settings(paths[:1], isolated=True)
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as cold:
            r1 = check_paths(paths, settings, cache_dir=cache, jobs=args.jobs)
        with Timer() as warm:
            r2 = check_paths(paths, settings, cache_dir=cache, jobs=args.jobs)
    assert r1.findings == r2.findings
    internal = [e for e in r1.errors if e["message"].startswith("internal error")]

    bare_parsed_cpu, _ = bare_parse(parsed)
    bare_passed_cpu, _ = bare_parse(passed)
    core_cpu = analyse_in_process(parsed)
    sample = paths
    if args.bare_sample and args.bare_sample < len(paths):
        step = len(paths) / args.bare_sample
        sample = [paths[int(i * step)] for i in range(args.bare_sample)]
    bare_all_cpu, failures = bare_parse(sample)
    ast_all_cpu = ast_parse(paths)
    sample_lines, _ = measure(sample)
    if sample is not paths and sample_lines:
        bare_all_cpu *= lines / sample_lines

    tf = None
    if not args.no_torchfix:
        try:
            tf = run_torchfix(torchfix_exe(Path(args.torchfix_venv)), paths, args.jobs)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"TorchFix skipped: {exc}")

    print()
    print(f"{'run':<34}{'wall s':>9}{'CPU s':>9}{'files/s':>10}{'lines/s':>12}")
    rows = [("lraudit check, cold", cold.wall, cold.cpu), ("lraudit check, warm (cache)", warm.wall, warm.cpu)]
    if tf is not None:
        rows.append(("TorchFix --select ALL", tf.wall, tf.cpu))
    for name, wall, cpu in rows:
        print(f"{name:<34}{wall:>9.2f}{cpu:>9.2f}{fmt_rate(len(paths), wall):>10}{fmt_rate(lines, wall):>12}")
    print(f"{'bare libcst, files lraudit parses':<34}{'':>9}{bare_parsed_cpu:>9.2f}")
    print(f"{'bare libcst, prefilter passes':<34}{'':>9}{bare_passed_cpu:>9.2f}")
    print(f"{'lraudit core on files it parses':<34}{'':>9}{core_cpu:>9.2f}")
    label = "bare libcst, all files" + (" (extrap.)" if sample is not paths else "")
    print(f"{label:<34}{'':>9}{bare_all_cpu:>9.2f}")
    print(f"{'ast.parse, all files':<34}{'':>9}{ast_all_cpu:>9.2f}")
    print()
    print(f"findings: {len(r1.findings)}  errors: {len(r1.errors)}  internal errors: {len(internal)}"
          f"  libcst parse failures: {failures}")
    print("ratios (CPU unless noted):")
    print(f"  cold / bare libcst of the files it parses : {cold.cpu / bare_parsed_cpu:.2f}x  (target <= 2)"
          if bare_parsed_cpu else "  no file passed the prefilter")
    if bare_parsed_cpu:
        print(f"  core / bare libcst, same files (1 core)   : {core_cpu / bare_parsed_cpu:.2f}x  "
              "(what the model and rules add to the parse)")
    if bare_passed_cpu:
        print(f"  cold / bare libcst of prefilter passes    : {cold.cpu / bare_passed_cpu:.2f}x  "
              "(the ast prescan spares libcst most of them)")
    print(f"  bare libcst of all files / cold           : {bare_all_cpu / cold.cpu:.2f}x")
    if ast_all_cpu:
        print(f"  cold / ast.parse of all files             : {cold.cpu / ast_all_cpu:.2f}x  (target <= 1; "
              "project modules read included)")
    print(f"  cold / warm (wall)                        : {cold.wall / warm.wall:.1f}x  (target >= 10)")
    if tf is not None:
        print(f"  TorchFix / cold (CPU)                     : {tf.cpu / cold.cpu:.1f}x  (target >= 10)")
        print(f"  TorchFix / cold (wall)                    : {tf.wall / cold.wall:.1f}x")
    print("project model:")
    project_reads(args.entry)


if __name__ == "__main__":
    main()
