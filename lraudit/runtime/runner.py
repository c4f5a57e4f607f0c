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

Workers started with ``torch.multiprocessing.spawn`` (or ``start_processes``) run under an audit of
their own: the target is wrapped in a picklable :class:`_AuditedWorker`, which audits the worker,
compares the ranks before its process group is destroyed, prints its report (rank 0, or any rank with
findings), writes its trajectory (``--out``, ``.rankN`` for the others) and tells the parent what it
found (``--strict`` counts the workers' findings).

Exit: once a process used ``torch.distributed``, the gloo/NCCL objects the script left behind are not
destroyed by interpreter finalization (their destructors can deadlock on the GIL with a gloo thread, or
abort the process with ``terminate called without an active exception``): after the report and the
trajectory are written, :func:`leave` runs the ``atexit`` handlers, flushes every open file and ends the
process with ``os._exit``.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import importlib.util
import io
import json
import os
import runpy
import sys
import tempfile
import traceback
import warnings
from typing import Any, Callable, Dict, Optional, Sequence

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT

# What the script left behind (its globals, its exception and so its frames) lives until the interpreter
# exits, as it does under ``python script.py``. Dropped earlier, inside run_script, the last reference to
# a DDP model or a gloo process group is released while the process still runs its threads normally:
# the process group's destructor then waits, holding the GIL, for a gloo thread that waits for the GIL
# (a hang at exit in about half of the torchrun runs). At interpreter exit such threads are stopped first.
_KEPT_ALIVE: list = []


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


_PROCESS: Dict[str, Any] = {"distributed": False, "rank": None}  # what this process did


def _distributed_in_use() -> bool:
    if _PROCESS["distributed"]:
        return True
    dist = sys.modules.get("torch.distributed")
    try:
        return bool(dist is not None and dist.is_available() and dist.is_initialized())
    except Exception:  # pragma: no cover
        return False


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
            _PROCESS["distributed"] = True
            try:
                _PROCESS["rank"] = dist.get_rank()
            except Exception:  # pragma: no cover
                pass
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
    if _PROCESS["rank"] is not None:
        return int(_PROCESS["rank"])
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except Exception:  # pragma: no cover
        pass
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


# -- mp.spawn workers ---------------------------------------------------------------------------------
class _AuditedWorker:
    """An ``mp.spawn`` target that runs under an audit in the worker (pickled by reference to ``fn``)."""

    def __init__(self, fn: Callable, options: dict) -> None:
        self.fn = fn
        self.options = options

    def __call__(self, index: int, *args: Any) -> Any:
        return _run_worker(self.fn, index, args, self.options)


def _run_worker(fn: Callable, index: int, args: tuple, options: dict) -> Any:
    from rich.console import Console

    from lraudit.runtime import LRAuditInternalWarning, LRAuditWarning, audit
    from lraudit.runtime.trajectory_report import render_trajectory

    session = audit(None, strict=False, expect=options.get("expect"))
    run = session.start()
    failure: Optional[BaseException] = None
    try:
        with _compare_ranks_before_destroy(run):
            return fn(index, *args)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=LRAuditWarning)
            warnings.filterwarnings("default", category=LRAuditInternalWarning)
            try:
                session.stop(failure)
            except Exception as exc:  # an lraudit bug must not hide the worker's result
                print(f"lraudit run: internal error while finishing the audit: {exc!r}", file=sys.stderr)
        rank = _PROCESS["rank"] if _PROCESS["rank"] is not None else index
        data = run.to_dict()
        if data.get("optimizers") or data.get("findings"):
            if rank == 0 or data.get("findings"):
                render_trajectory(data, Console(stderr=True),
                                  title=f"lraudit run: spawned worker {index} (rank {rank})")
            out = options.get("out")
            if out:
                path = _rank_path(out, rank)
                try:
                    run.save(path)
                    print(f"lraudit run: trajectory written to {path}", file=sys.stderr)
                except OSError as exc:
                    print(f"lraudit run: could not write the trajectory to {path}: {exc}", file=sys.stderr)
        summary_dir = options.get("summary_dir")
        if summary_dir:
            try:
                with open(os.path.join(summary_dir, f"worker{index}.json"), "w", encoding="utf-8") as fh:
                    json.dump({"rank": rank, "findings": len(data.get("findings") or []),
                               "optimizers": len(data.get("optimizers") or [])}, fh)
            except OSError:  # pragma: no cover - the parent then reports what it knows
                pass
        if failure is None and _distributed_in_use():
            leave(0)  # the worker's own exit would tear down gloo at finalization (see the module doc)


@contextlib.contextmanager
def _audit_spawned_workers(options: dict):
    """While the script runs, ``torch.multiprocessing.spawn``/``start_processes`` audit their workers."""
    mp_spawn = sys.modules.get("torch.multiprocessing.spawn")
    mp = sys.modules.get("torch.multiprocessing")
    if mp_spawn is None or mp is None:
        try:
            import torch.multiprocessing as mp
            import torch.multiprocessing.spawn as mp_spawn
        except ImportError:  # pragma: no cover
            yield
            return
    original = mp_spawn.start_processes

    @functools.wraps(original)
    def start_processes(fn, *args, **kwargs):
        return original(_AuditedWorker(fn, options), *args, **kwargs)

    patched = [(mp_spawn, "start_processes"), (mp, "start_processes")]
    saved = [(m, n, getattr(m, n, None)) for m, n in patched]
    for m, n in patched:
        if getattr(m, n, None) is original:
            setattr(m, n, start_processes)
    try:
        yield
    finally:
        for m, n, old in saved:
            if getattr(m, n, None) is start_processes:
                setattr(m, n, old)


def _worker_summaries(summary_dir: str) -> list:
    out = []
    try:
        names = sorted(os.listdir(summary_dir))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(summary_dir, name), encoding="utf-8") as fh:
                out.append(json.load(fh))
        except (OSError, ValueError):
            continue
    return out


def leave(status: int) -> None:
    """End the process now if it used torch.distributed (see the module doc); else return."""
    if not _distributed_in_use():
        return
    try:
        atexit._run_exitfuncs()
    except BaseException:  # pragma: no cover - a handler that fails must not keep the process alive
        pass
    for obj in gc.get_objects():  # buffered files the script never closed: flushed as exit would
        try:
            if isinstance(obj, io.IOBase) and not obj.closed and obj.writable():
                obj.flush()
        except Exception:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover
            pass
    os._exit(status)


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
    summary_dir = tempfile.mkdtemp(prefix="lraudit-workers-")
    worker_options = {"out": os.path.abspath(out) if out else None, "expect": expect, "summary_dir": summary_dir}
    session = audit(None, strict=False, expect=expect)
    run = session.start()
    auditing_pid = os.getpid()
    status, failure = 0, None
    try:
        with _compare_ranks_before_destroy(run), _audit_spawned_workers(worker_options):
            if module:
                _KEPT_ALIVE.append(runpy.run_module(target, run_name="__main__", alter_sys=True))
            else:
                _KEPT_ALIVE.append(runpy.run_path(script, run_name="__main__"))
    except SystemExit as exc:
        _KEPT_ALIVE.append(exc)
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _KEPT_ALIVE.append(exc)
        failure, status = exc, INTERRUPTED
        print("KeyboardInterrupt", file=sys.stderr)
    except BaseException as exc:  # the script's own error: report it as Python would, then the audit
        _KEPT_ALIVE.append(exc)
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
    workers = _worker_summaries(summary_dir)
    _remove_tree(summary_dir)
    rank = _rank()
    data = run.to_dict()
    worker_findings = sum(int(w.get("findings") or 0) for w in workers)
    if workers and not data.get("optimizers") and not data.get("findings"):
        # the training ran in spawned workers: they printed and wrote their own reports
        audited = [w for w in workers if w.get("optimizers")]
        print(f"lraudit run: {target}: {len(audited)} spawned worker(s) audited, {worker_findings} finding(s) "
              "(their reports above)", file=sys.stderr)
        if strict and worker_findings and status == 0:
            return 1
        return status
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
    if strict and (data.get("findings") or worker_findings) and status == 0:
        return 1
    return status


def _remove_tree(folder: str) -> None:
    try:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    except OSError:  # pragma: no cover - a temporary folder left behind is harmless
        pass
