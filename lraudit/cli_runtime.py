"""The runtime half's commands, ``lraudit run``, ``lraudit report`` and ``lraudit export``: thin click adapters.

Registered on the main group by ``lraudit/cli.py`` (``main.add_command(run_command)`` ...). This module
imports no torch (the CLI's main module imports it for ``lraudit check`` too): each command imports its
core function when it runs.
"""
from __future__ import annotations

import click

__all__ = ["run_command", "report_command", "export_command"]


@click.command(
    "run",
    context_settings=dict(ignore_unknown_options=True, allow_interspersed_args=False),
    short_help="Run a training script under the LR audit.",
)
@click.option("--out", "-o", metavar="LR.JSON", type=click.Path(dir_okay=False),
              help="Write the LR trajectory (JSON) here, also when the script fails.")
@click.option("--strict", is_flag=True, help="Exit 1 when the audit has findings.")
@click.option("--expect", type=click.Choice(["scheduler", "scheduler-per-step"]),
              help="LR015 when the LR differs from what the attached scheduler alone gives: 'scheduler' steps "
              "it where it was really stepped (per batch or per epoch); 'scheduler-per-step' once per "
              "optimizer step (also checks the cadence).")
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
    from lraudit.runtime.runner import leave, run_script

    status = run_script(target, list(args), module=module, out=out, strict=strict, expect=expect)
    leave(status)  # under torch.distributed: ends the process here (see lraudit.runtime.runner)
    ctx.exit(status)


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
              help="Also plot every series to a PNG, one panel per optimizer, findings marked (needs the plot extra).")
@click.option("--log", "log_scale", is_flag=True,
              help="Log-scale LR axes in the PNG (by default a panel uses one when its series differ by 100x or more).")
@click.pass_context
def report_command(ctx, trajectory, png, log_scale):
    """Print the report of a trajectory saved by `lraudit run --out` or `run.save()` (the table
    `run.report()` prints): per series the start, min, max and end value, the number of changes,
    the findings, and a sparkline."""
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


@click.command("export", short_help="Export a saved LR trajectory to CSV, TensorBoard or W&B.")
@click.argument("trajectory", metavar="LR.JSON", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["csv", "tensorboard", "wandb"]), required=True,
              help="csv: a step column and one column per series; tensorboard: scalars in an event file; "
                   "wandb: an offline run (needs wandb).")
@click.option("-o", "--output", metavar="PATH", type=click.Path(),
              help="The CSV file, or the folder of the TensorBoard / W&B run (default: next to LR.JSON: "
                   "lr.csv, lr-tensorboard/, lr-wandb/).")
@click.pass_context
def export_command(ctx, trajectory, target, output):
    """Write the series of a trajectory where other tools read them, named like Lightning's
    LearningRateMonitor (lr-SGD, lr-AdamW/pg2, lr-AdamW/head), the optimizer step on the x-axis.

    \b
    lraudit export lr.json --to csv -o lr.csv
    lraudit export lr.json --to tensorboard -o runs/lr   # tensorboard --logdir runs
    """
    from lraudit.runtime import export as export_mod
    from lraudit.runtime.trajectory_report import TrajectoryError, load_trajectory

    try:
        data = load_trajectory(trajectory)
    except TrajectoryError as exc:
        click.echo(f"lraudit export: {exc}", err=True)
        ctx.exit(2)
    out = output or export_mod.default_output(trajectory, target)
    try:
        written = export_mod.export(data, target, out)
    except ImportError as exc:
        click.echo(f"lraudit export: {exc}", err=True)
        ctx.exit(2)
    except OSError as exc:
        click.echo(f"lraudit export: could not write {out}: {exc.strerror or exc}", err=True)
        ctx.exit(2)
    click.echo(f"lraudit export: {target} written to {written}", err=True)
