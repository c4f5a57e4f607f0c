"""The ``lraudit`` command: a click group whose commands are thin adapters over the core.

``check`` -> :func:`lraudit.config.resolve_settings` + :func:`lraudit.engine.check_paths` + a renderer
of :mod:`lraudit.report`; ``rules`` and ``explain`` render :mod:`lraudit.catalog`; ``run`` and
``report`` (the runtime half) live in :mod:`lraudit.cli_runtime` and are registered when present.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence, Tuple

import click

import lraudit
from lraudit import catalog
from lraudit.report import FORMATS

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Loads the runtime half's commands only when asked for (``lraudit check`` never imports them)."""

    _runtime_loaded = False

    def _load_runtime(self) -> None:
        if not _Group._runtime_loaded:
            _Group._runtime_loaded = True
            _register_runtime_commands()

    def get_command(self, ctx, cmd_name):
        if cmd_name in _RUNTIME_COMMANDS:
            self._load_runtime()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        self._load_runtime()
        return super().list_commands(ctx)


_RUNTIME_COMMANDS = ("run", "report", "export")


@click.group(cls=_Group, context_settings=_CONTEXT)
@click.version_option(lraudit.__version__, "-V", "--version", prog_name="lraudit")
def main() -> None:
    """lraudit: find learning-rate bugs in PyTorch training code, statically and at run time.

    \b
    lraudit check .               lint (never imports your code, never needs torch)
    lraudit rules                 the rule catalogue
    lraudit explain LR001         one rule's page
    lraudit run train.py          run a script under the runtime audit

    \b
    Installed as the distribution torch-lraudit; the runtime half needs torch:
    pip install 'torch-lraudit[runtime]'
    """


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _use_color(flag: Optional[bool], stream, to_file: bool) -> bool:
    if to_file:
        return False
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream)


@main.command(context_settings=_CONTEXT, short_help="Lint training code for learning-rate bugs (static).")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format (text: findings with code frames; concise: one line per finding).")
@click.option("--select", multiple=True, metavar="CODES",
              help="Rules to run, by code or prefix (comma-separated or repeated); replaces the config's.")
@click.option("--extend-select", multiple=True, metavar="CODES", help="Rules to run in addition.")
@click.option("--ignore", multiple=True, metavar="CODES", help="Rules not to run, by code or prefix.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place, then report what remains.")
@click.option("--diff", is_flag=True, help="Print the fixes as unified diffs instead of writing them.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes the catalogue marks unsafe.")
@click.option("--add-noqa", is_flag=True,
              help="Add `# lraudit: ignore[CODES]` to every reported line (merged with an existing one).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings are reported (not on errors).")
@click.option("--statistics", is_flag=True, help="Print how many findings each rule has instead of the findings.")
@click.option("--show-settings", is_flag=True,
              help="Print the resolved configuration and where each value came from, then exit.")
@click.option("-q", "--quiet", is_flag=True, help="Print findings and errors only, no summary.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), help="Write the report to this file.")
@click.option("--stdin-filename", metavar="PATH",
              help="With PATH `-` (stdin): check the source as this file (config, excludes, per-file ignores).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes [default: the number of cores]; used when there is enough work.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write .lraudit_cache/.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache directory [default: .lraudit_cache/ beside the config, or env LRAUDIT_CACHE_DIR].")
@click.option("--report-unused-ignores", is_flag=True, help="Report suppressions that suppress nothing.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Use this config file (pyproject.toml or a TOML file of [tool.lraudit] keys).")
@click.option("--isolated", is_flag=True, help="Ignore every configuration file.")
@click.option("--force-exclude", is_flag=True, default=None,
              help="Apply exclude/extend-exclude to files named on the command line too (pre-commit).")
@click.option("--color/--no-color", default=None, help="Force colours on or off [default: on a terminal].")
def check(
    paths: Tuple[str, ...],
    fmt: str,
    select: Tuple[str, ...],
    extend_select: Tuple[str, ...],
    ignore: Tuple[str, ...],
    fix: bool,
    diff: bool,
    unsafe_fixes: bool,
    add_noqa: bool,
    exit_zero: bool,
    statistics: bool,
    show_settings: bool,
    quiet: bool,
    output_file: Optional[str],
    stdin_filename: Optional[str],
    jobs: Optional[int],
    no_cache: bool,
    cache_dir: Optional[str],
    report_unused_ignores: bool,
    config_path: Optional[str],
    isolated: bool,
    force_exclude: Optional[bool],
    color: Optional[bool],
) -> None:
    """Lint PATHS (files and directories; default: .) for learning-rate bugs; `-` reads stdin.

    Exit status: 0 no findings, 1 findings, 2 a usage or configuration error, or a file that could not
    be read or parsed (the other files are still checked and reported).
    """
    from lraudit.config import ConfigError, resolve_settings
    from lraudit.engine import check_paths, exit_status, fix_available
    from lraudit.report.text import progress

    stdin = paths == ("-",) or (not paths and stdin_filename is not None)
    if "-" in paths and not stdin:
        raise click.UsageError("`-` (stdin) cannot be combined with other paths")
    if stdin and add_noqa:
        raise click.UsageError("--add-noqa edits files; it cannot be combined with stdin")
    if add_noqa and (fix or diff):
        raise click.UsageError("--add-noqa cannot be combined with --fix or --diff")
    if statistics and fmt not in ("text", "concise", "json"):
        raise click.UsageError(f"--statistics prints text or json, not {fmt}")
    targets: Sequence[str] = [_config_anchor(stdin_filename)] if stdin else (list(paths) or ["."])
    try:
        os.getcwd()
    except OSError:
        click.echo("lraudit: error: the current directory no longer exists (deleted?); cd somewhere that does",
                   err=True)
        sys.exit(2)
    if output_file and _writes_over_input(output_file, targets):
        click.echo(f"lraudit: error: --output-file {output_file} is one of the files being checked; "
                   "refusing to write the report over it", err=True)
        sys.exit(2)
    try:
        settings = resolve_settings(
            targets,
            config_path=config_path,
            select=select if select else None,
            ignore=ignore,
            extend_select=extend_select,
            isolated=isolated,
        )
    except ConfigError as exc:
        click.echo(f"lraudit: error: {exc}", err=True)
        sys.exit(2)
    if force_exclude:
        settings.force_exclude = True

    if show_settings:
        from lraudit.show_settings import render_settings, settings_rows

        given = {"paths": paths, "--select": select, "--extend-select": extend_select, "--ignore": ignore,
                 "--config": config_path, "--isolated": isolated, "--force-exclude": force_exclude}
        files = [stdin_filename] if stdin and stdin_filename else [p for p in targets if os.path.isfile(p)]
        rows = settings_rows(settings, targets=["-"] if stdin else targets, cli=given, cache_dir=cache_dir,
                             no_cache=no_cache, files=[] if stdin and not stdin_filename else files)
        click.echo(render_settings(rows, "json" if fmt == "json" else "text"), nl=False)
        sys.exit(0)

    if (fix or diff) and not fix_available():
        click.echo("lraudit: no fixes available (this lraudit has no fixer yet); checking only.", err=True)

    out_stream = sys.stdout
    use_color = _use_color(color, out_stream, output_file is not None)
    if stdin:
        from lraudit.engine import check_stdin

        data = _read_stdin()
        result, text = check_stdin(data, stdin_filename, settings, fix=fix, diff=diff, unsafe_fixes=unsafe_fixes)
        if fix and not diff:
            # as ruff: the fixed source on stdout (the input itself when nothing changed), the report on stderr
            _write_source(data, text)
            _emit(_render(result, fmt, diff, statistics, use_color=False, quiet=quiet), output_file, err=True)
        else:
            _emit(_render(result, fmt, diff, statistics, use_color, quiet), output_file, color=use_color)
        sys.exit(exit_status(result, exit_zero=exit_zero, diff=diff))

    show_progress = not quiet and _isatty(sys.stderr) and "CI" not in os.environ
    try:
        with _terminate_as_interrupt(), progress(show_progress) as callback:
            result = check_paths(
                targets,
                settings,
                fix=fix,
                diff=diff,
                unsafe_fixes=unsafe_fixes,
                use_cache=not no_cache,
                cache_dir=cache_dir,
                jobs=jobs,
                report_unused_ignores=report_unused_ignores,
                progress=callback,
            )
    except KeyboardInterrupt:  # the engine has already ended its worker processes
        click.echo("lraudit: interrupted", err=True)
        sys.exit(130)
    except _Terminated:
        sys.exit(143)

    if add_noqa:
        sys.exit(_add_noqa(result, settings))

    _emit(_render(result, fmt, diff, statistics, use_color, quiet), output_file, color=use_color)
    if statistics and fmt == "json":
        for e in result.errors:
            click.echo(f"error: {e['path']}: {e['message']}", err=True)
    sys.exit(exit_status(result, exit_zero=exit_zero, diff=diff))


def _add_noqa(result, settings) -> int:
    """--add-noqa after the check: the comments, a one-line summary, and the exit status (2: a file
    could not be checked or changed; 1: findings remain that no comment could cover; else 0)."""
    from lraudit.add_noqa import add_noqa

    added = add_noqa(result, settings)
    for e in result.errors + added.errors:
        click.echo(f"error: {e['path']}: {e['message']}", err=True)
    for u in added.unplaced:
        click.echo(f"{u['path']}: {u['message']}", err=True)
    n, files = added.added, len(added.files)
    click.echo(f"Added {n} suppression{'' if n == 1 else 's'} to {files} file{'' if files == 1 else 's'}.")
    return 2 if result.errors or added.errors else (1 if added.unplaced else 0)


def _config_anchor(stdin_filename: Optional[str]) -> str:
    """Where the configuration of stdin source is searched from: the nearest existing directory of
    ``--stdin-filename`` (the file need not exist), else the current directory."""
    here = os.path.dirname(os.path.abspath(stdin_filename)) if stdin_filename else os.getcwd()
    while not os.path.isdir(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    return here


def _render(result, fmt: str, diff: bool, statistics: bool, use_color: bool, quiet: bool) -> str:
    from lraudit.report import render
    from lraudit.report.text import render_diff

    if statistics:
        from lraudit.report.statistics import render_statistics

        return render_statistics(result, "json" if fmt == "json" else "text")
    if diff and fmt in ("text", "concise"):
        return render_diff(result, color=use_color)
    return render(result, fmt, color=use_color, quiet=quiet)


def _emit(report: str, output_file: Optional[str], err: bool = False, color: bool = False) -> None:
    if output_file:
        try:
            parent = os.path.dirname(output_file)
            if parent:
                os.makedirs(parent, exist_ok=True)
            with open(output_file, "w", encoding="utf-8") as fh:
                fh.write(report)
        except OSError as exc:
            click.echo(f"lraudit: error: cannot write {output_file}: {exc.strerror or exc}", err=True)
            sys.exit(2)
    else:
        click.echo(_printable(report, sys.stderr if err else sys.stdout), nl=False, err=err, color=color)


def _write_source(data: bytes, text: Optional[str]) -> None:
    """The (fixed) stdin source, in the input's own encoding; the input bytes when nothing changed."""
    from lraudit.file_reading import DecodeError, decode_source

    out = data
    if text is not None:
        try:
            decoded = decode_source(data)
        except DecodeError:
            decoded = None
        if decoded is None or text != decoded.text:
            out = text.encode(decoded.encoding if decoded is not None else "utf-8")
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stream (an IDE's console): let it encode
        sys.stdout.write(out.decode("utf-8", errors="replace"))
        return
    stream.write(out)
    stream.flush()


def _read_stdin() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode("utf-8")


def _printable(report: str, stream) -> str:
    """The report, printable in the output's encoding: a file name's undecodable bytes (kept as
    surrogate escapes) are shown as ``\\xNN``, anything else unencodable backslash-escaped."""
    import re

    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        report.encode(encoding)
        return report
    except LookupError:
        return report
    except UnicodeEncodeError:
        shown = re.sub("[\udc80-\udcff]", lambda m: "\\x%02x" % (ord(m.group()) - 0xDC00), report)
        return shown.encode(encoding, "backslashreplace").decode(encoding)


def _writes_over_input(output_file: str, targets: Sequence[str]) -> bool:
    """Whether ``--output-file`` names a file that is checked: a named path, or a .py/.ipynb file
    inside a named directory."""
    out = os.path.realpath(output_file)
    for target in targets:
        if target == "-":
            continue
        real = os.path.realpath(target)
        if out == real or (os.path.exists(output_file) and os.path.exists(target) and os.path.samefile(out, real)):
            return True
        if os.path.isdir(real) and out.startswith(real.rstrip(os.sep) + os.sep) and \
                out.endswith((".py", ".pyi", ".ipynb")):
            return True
    return False


class _Terminated(Exception):
    """SIGTERM during a check: unwinds like Ctrl-C so that the worker pool is ended."""


def _terminate_as_interrupt():
    """While checking, SIGTERM raises :class:`_Terminated` in the main thread (the engine then ends
    its workers; they also die with this process on Linux) instead of killing lraudit on the spot."""
    import contextlib
    import signal
    import threading

    @contextlib.contextmanager
    def handler():
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def raise_terminated(signum, frame):
            raise _Terminated()

        try:
            previous = signal.signal(signal.SIGTERM, raise_terminated)
        except (ValueError, OSError):
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    return handler()


@main.command(context_settings=_CONTEXT)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules(fmt: str) -> None:
    """List the rule catalogue."""
    all_rules = list(catalog.RULES.values())
    if fmt == "json":
        data = [
            {"code": r.code, "name": r.name, "summary": r.summary, "severity": r.severity, "fix": r.fix,
             "static": bool(r.static), "runtime": bool(r.runtime), "help_uri": r.help_uri}
            for r in all_rules
        ]
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(r.name) for r in all_rules)
    for r in all_rules:
        halves = r.halves
        fix = r.fix if r.fix != catalog.FIX_NONE else "-"
        click.echo(f"{r.code}  {r.name:<{width}}  {halves:<14}  {fix:<6}  {r.summary}")


@main.command(context_settings=_CONTEXT, short_help="Print the documentation page of one rule.")
@click.argument("code")
def explain(code: str) -> None:
    """Print the documentation page of one rule (by code, e.g. LR001, or name)."""
    try:
        rule = catalog.get(code)
    except KeyError:
        click.echo(f"lraudit: error: unknown rule {code!r} (see `lraudit rules`)", err=True)
        sys.exit(2)
    click.echo(catalog.render_page(rule), nl=False)


def _register_runtime_commands() -> None:
    """``lraudit run`` / ``lraudit report`` from the runtime half; ``check`` never depends on them."""
    import importlib

    try:
        cli_runtime = importlib.import_module("lraudit.cli_runtime")
    except ModuleNotFoundError as exc:
        if exc.name in ("lraudit.cli_runtime",):
            return
        _register_broken(exc)
        return
    except Exception as exc:  # noqa: BLE001 - a broken runtime CLI must not break `lraudit check`
        _register_broken(exc)
        return
    try:
        commands = [(getattr(cli_runtime, attr, None), name) for attr, name in
                    (("run_command", "run"), ("report_command", "report"),
                                      ("export_command", "export"))]
    except Exception as exc:  # noqa: BLE001
        _register_broken(exc)
        return
    for command, name in commands:
        if isinstance(command, click.Command) and name not in main.commands:
            main.add_command(command, name)


def _register_broken(exc: BaseException) -> None:
    for name in ("run", "report", "export"):

        @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                       add_help_option=False)
        def broken() -> None:
            click.echo(f"lraudit: error: the runtime commands could not be loaded: {exc}", err=True)
            sys.exit(2)

        main.add_command(broken, name)
