"""The runtime half's commands, ``lraudit run`` and ``lraudit report``: thin click adapters.

Registered on the main group by ``lraudit/cli.py`` (``main.add_command(run_command)`` ...). This module
imports no torch (the CLI's main module imports it for ``lraudit check`` too): each command imports its
core function when it runs.
"""
from __future__ import annotations

import click

__all__ = ["run_command", "report_command"]


@click.command(
    "run",
    context_settings=dict(ignore_unknown_options=True, allow_interspersed_args=False),
    short_help="Run a training script under the LR audit.",
)
@click.option("--out", "-o", metavar="LR.JSON", type=click.Path(dir_okay=False),
              help="Write the LR trajectory (JSON) here, also when the script fails.")
@click.option("--strict", is_flag=True, help="Exit 1 when the audit has findings.")
@click.option("--expect", type=click.Choice(["scheduler"]),
              help="Compare with what the attached scheduler alone would produce, one step per optimizer step (LR015).")
@click.option("-m", "module", is_flag=True, help="Run MODULE (a module name) like python -m does.")
@click.argument("target", metavar="SCRIPT|MODULE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_command(ctx, out, strict, expect, module, target, args):
    """Run SCRIPT (or -m MODULE) with ARGS under an audit of every optimizer it steps.

    The script sees the sys.argv it expects ([SCRIPT, *ARGS]); options after SCRIPT belong to it.
    Prints the LR report on stderr when the script ends (normally, on an exception or on Ctrl-C),
    writes the trajectory with --out, and exits with the script's own status (1 with --strict when
    the audit has findings).

    \b
    lraudit run --out lr.json train.py --epochs 3
    lraudit run --strict -m mypkg.train --config small.yaml
    """
    _require_torch(ctx, "lraudit run")
    from lraudit.runtime.runner import run_script

    ctx.exit(run_script(target, list(args), module=module, out=out, strict=strict, expect=expect))


def _require_torch(ctx, command: str) -> None:
    """One line and exit 2 where torch is missing or broken, instead of the runtime's traceback."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch" and not (exc.name or "").startswith("torch."):
            click.echo(f"{command}: torch cannot be imported: {exc}", err=True)
        else:
            click.echo(f"{command}: needs PyTorch, which is not installed: pip install 'torch-lraudit[runtime]'",
                       err=True)
        ctx.exit(2)
    except Exception as exc:  # noqa: BLE001 - a broken torch install (missing shared library, ...)
        click.echo(f"{command}: torch is installed but cannot be imported: {type(exc).__name__}: {exc}", err=True)
        ctx.exit(2)


@click.command("report", short_help="Show a saved LR trajectory (table, sparklines, PNG).")
@click.argument("trajectory", metavar="LR.JSON", type=click.Path(dir_okay=False))
@click.option("--png", metavar="OUT.PNG", type=click.Path(dir_okay=False),
              help="Also plot every series to a PNG, findings marked (needs the plot extra).")
@click.option("--log", "log_scale", is_flag=True, help="Log-scale LR axis in the PNG.")
@click.pass_context
def report_command(ctx, trajectory, png, log_scale):
    """Print the report of a trajectory saved by `lraudit run --out` or `run.save()`: per optimizer and
    param group the start, min, max and end LR, the number of changes, the findings, and a sparkline."""
    from rich.console import Console

    from lraudit.runtime.trajectory_report import TrajectoryError, load_trajectory, render_trajectory

    try:
        data = load_trajectory(trajectory)
    except TrajectoryError as exc:
        click.echo(f"lraudit report: {exc}", err=True)
        ctx.exit(2)
    render_trajectory(data, Console())
    if png:
        from lraudit.runtime.plot import plot_trajectory

        try:
            plot_trajectory(data, png, log=log_scale)
        except ImportError as exc:
            click.echo(f"lraudit report: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:
            click.echo(f"lraudit report: could not write {png}: {exc}", err=True)
            ctx.exit(2)
        click.echo(f"plot written to {png}", err=True)
