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


_RUNTIME_COMMANDS = ("run", "report")


@click.group(cls=_Group, context_settings=_CONTEXT)
@click.version_option(lraudit.__version__, "-V", "--version", prog_name="lraudit")
def main() -> None:
    """lraudit: find learning-rate bugs in PyTorch training code, statically and at run time."""


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


@main.command(context_settings=_CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--select", multiple=True, metavar="CODES",
              help="Rules to run, by code or prefix (comma-separated or repeated); replaces the config's.")
@click.option("--extend-select", multiple=True, metavar="CODES", help="Rules to run in addition.")
@click.option("--ignore", multiple=True, metavar="CODES", help="Rules not to run, by code or prefix.")
@click.option("--fix", is_flag=True, help="Apply safe fixes in place, then report what remains.")
@click.option("--diff", is_flag=True, help="Print the fixes as unified diffs instead of writing them.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes the catalogue marks unsafe.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings are reported (not on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Print findings and errors only, no summary.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False), help="Write the report to this file.")
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
    exit_zero: bool,
    quiet: bool,
    output_file: Optional[str],
    jobs: Optional[int],
    no_cache: bool,
    cache_dir: Optional[str],
    report_unused_ignores: bool,
    config_path: Optional[str],
    isolated: bool,
    force_exclude: Optional[bool],
    color: Optional[bool],
) -> None:
    """Lint PATHS (files and directories; default: .) for learning-rate bugs.

    Exit status: 0 no findings, 1 findings, 2 a usage or configuration error, or a file that could not
    be read or parsed (the other files are still checked and reported).
    """
    from lraudit.config import ConfigError, resolve_settings
    from lraudit.engine import check_paths, exit_status, fix_available
    from lraudit.report import render
    from lraudit.report.text import progress, render_diff

    targets: Sequence[str] = list(paths) or ["."]
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

    if (fix or diff) and not fix_available():
        click.echo("lraudit: no fixes available (this lraudit has no fixer yet); checking only.", err=True)

    out_stream = sys.stdout
    use_color = _use_color(color, out_stream, output_file is not None)
    show_progress = not quiet and _isatty(sys.stderr) and "CI" not in os.environ
    with progress(show_progress) as callback:
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

    if diff and fmt == "text":
        report = render_diff(result, color=use_color)
    else:
        report = render(result, fmt, color=use_color, quiet=quiet)
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
        click.echo(report, nl=False, color=use_color)
    sys.exit(exit_status(result, exit_zero=exit_zero, diff=diff))


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


@main.command(context_settings=_CONTEXT)
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
                    (("run_command", "run"), ("report_command", "report"))]
    except Exception as exc:  # noqa: BLE001
        _register_broken(exc)
        return
    for command, name in commands:
        if isinstance(command, click.Command) and name not in main.commands:
            main.add_command(command, name)


def _register_broken(exc: BaseException) -> None:
    for name in ("run", "report"):

        @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                       add_help_option=False)
        def broken() -> None:
            click.echo(f"lraudit: error: the runtime commands could not be loaded: {exc}", err=True)
            sys.exit(2)

        main.add_command(broken, name)
