"""The core of ``lraudit run``: run a training script (or ``-m module``) under ``audit()`` of every optimizer.

The script runs in this process, as ``python script.py args...`` would run it: ``__name__ ==
"__main__"``, ``sys.argv == [script, *args]``, the script's folder first on ``sys.path`` (the current
folder for ``-m``). Whatever way it ends (normally, ``sys.exit``, an exception, Ctrl-C) the audit is
stopped, the report printed on stderr, the trajectory written, and the script's own exit status
returned: 0, the ``sys.exit`` code, 1 for an exception (its traceback printed as Python would),
130 for Ctrl-C; with ``strict``, 1 when a script that succeeded left findings.

Under ``torch.distributed`` (say ``torchrun --no-python lraudit run train.py``), scripts usually end
with ``dist.destroy_process_group()``, after which ranks can no longer talk: the runner compares the
ranks (LR016) just before the default group is destroyed. Ranks other than 0 print their report only
when it has findings and write their trajectory next to ``--out`` with a ``.rankN`` suffix.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import runpy
import sys
import traceback
import warnings
from typing import Optional, Sequence

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


def _exit_status(code) -> int:
    """``sys.exit(code)`` as Python's interpreter turns it into a process status."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else code % 256
    print(code, file=sys.stderr)  # sys.exit("message") prints the message and exits 1
    return 1


def _print_script_traceback(exc: BaseException) -> None:
    """The traceback of the script's exception without the runner's own frames on top."""
    skip = {os.path.abspath(__file__), os.path.abspath(runpy.__file__), os.path.abspath(contextlib.__file__)}

    def ours(filename: str) -> bool:
        return filename in ("<frozen runpy>", "<frozen contextlib>") or os.path.abspath(filename) in skip

    tb = exc.__traceback__
    while tb is not None and ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__, file=sys.stderr)


@contextlib.contextmanager
def _compare_ranks_before_destroy(run):
    """While the script runs, ``torch.distributed.destroy_process_group()`` first compares the ranks."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - the runtime needs torch anyway
        yield
        return
    if not dist.is_available():
        yield
        return
    original = dist.destroy_process_group
    done = []

    @functools.wraps(original)
    def destroy_process_group(group=None, *args, **kwargs):
        if group is None and not done and dist.is_initialized():
            done.append(True)
            from lraudit.runtime.distributed import compare_ranks

            run.add_findings(compare_ranks(run))
        return original(group, *args, **kwargs)

    dist.destroy_process_group = destroy_process_group
    try:
        yield
    finally:
        if dist.destroy_process_group is destroy_process_group:
            dist.destroy_process_group = original


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _rank_path(path: str, rank: int) -> str:
    if rank == 0:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.rank{rank}{ext or '.json'}"


def run_script(
    target: str,
    args: Sequence[str] = (),
    *,
    module: bool = False,
    out: Optional[str] = None,
    strict: bool = False,
    expect=None,
    console=None,
) -> int:
    """Run ``target`` (a script path, or a module name with ``module=True``) under ``audit()``.

    Returns the exit status ``lraudit run`` exits with. ``console`` (rich) receives the report; by
    default stderr, so that the script's own stdout stays clean.
    """
    from rich.console import Console

    from lraudit.runtime import LRAuditInternalWarning, LRAuditWarning, audit
    from lraudit.runtime.trajectory_report import render_trajectory

    console = console or Console(stderr=True)
    if out:  # resolved now: a script that changes directory (Hydra does) must not move the file
        out = os.path.abspath(os.path.expanduser(os.fspath(out)))
    if module:
        path_entry = os.getcwd()
        sys.path.insert(0, path_entry)
        try:
            found = importlib.util.find_spec(target) is not None
        except (ImportError, ValueError):
            found = False
        finally:
            sys.path.remove(path_entry)
        if not found:
            print(f"lraudit run: no module named {target}", file=sys.stderr)
            return 2
    else:
        script = os.path.abspath(target)
        if not os.path.isfile(script):
            print(f"lraudit run: no such script: {target}", file=sys.stderr)
            return 2
        path_entry = os.path.dirname(script)

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [target, *args]
    sys.path.insert(0, path_entry)
    session = audit(None, strict=False, expect=expect)
    run = session.start()
    auditing_pid = os.getpid()
    status, failure = 0, None
    try:
        with _compare_ranks_before_destroy(run):
            if module:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        failure, status = exc, INTERRUPTED
        print("KeyboardInterrupt", file=sys.stderr)
    except BaseException as exc:  # the script's own error: report it as Python would, then the audit
        failure, status = exc, 1
        _print_script_traceback(exc)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        with warnings.catch_warnings():
            # strict=False warns once per rule; the report below already lists every finding. lraudit's
            # own internal errors still show.
            warnings.filterwarnings("ignore", category=LRAuditWarning)
            warnings.filterwarnings("default", category=LRAuditInternalWarning)
            try:
                session.stop(failure)
            except Exception as exc:  # an lraudit bug must not hide the script's result
                print(f"lraudit run: internal error while finishing the audit: {exc!r}", file=sys.stderr)

    if os.getpid() != auditing_pid:
        # A child the script forked (os.fork) that returned normally: the parent reports and saves.
        return status
    rank = _rank()
    data = run.to_dict()
    ended = {0: "finished", INTERRUPTED: "was interrupted"}.get(status, f"exited with status {status}")
    written = None
    if out:  # saved before anything is rendered: a report that fails must not lose the trajectory
        path = _rank_path(out, rank)
        try:
            run.save(path)
            written = path
        except OSError as exc:
            print(f"lraudit run: could not write the trajectory to {path}: {exc}", file=sys.stderr)
            status = status or 2
    if rank == 0 or data.get("findings"):
        title = f"lraudit run: {target} {ended}" + (f" (rank {rank})" if rank else "")
        try:
            render_trajectory(data, console, title=title)
        except Exception as exc:  # an lraudit bug must not hide the script's result
            print(f"lraudit run: internal error while printing the report: {exc!r}", file=sys.stderr)
    if written:
        print(f"lraudit run: trajectory written to {written}", file=sys.stderr)
    if strict and data.get("findings") and status == 0:
        return 1
    return status
