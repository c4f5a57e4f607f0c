"""`lraudit report` and the pieces behind it: rendering a trajectory file, sparklines, the PNG."""
import json
import math
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lraudit.cli_runtime import report_command
from lraudit.runtime import plot as plot_mod
from lraudit.runtime.trajectory_file import read as load_trajectory_dict
from lraudit.runtime.trajectory_report import (
    TrajectoryError,
    count_changes,
    load_trajectory,
    render_text,
    sparkline,
    stats,
)

from .conftest import ROOT, step_trajectory


def test_stats_and_changes():
    lrs = [0.1, 0.1, 0.05, 0.05, 0.2, math.nan, math.nan]
    st = stats(lrs)
    assert (st["start"], st["min"], st["max"]) == (0.1, 0.05, 0.2)
    assert math.isnan(st["end"])
    assert count_changes(lrs) == 3  # NaN followed by NaN is no change
    assert stats([]) is None


def test_sparkline_shapes():
    assert sparkline([0.1] * 10, 5) == "▄▄▄▄▄"
    down = sparkline([1.0, 0.5, 0.25, 0.125], 4)
    assert down[0] == "█" and down[-1] == "▁" and list(down) == sorted(down, reverse=True)
    assert sparkline(list(range(1000)), 20) == "".join(sorted(sparkline(list(range(1000)), 20)))
    assert len(sparkline(list(range(1000)), 20)) == 20
    assert len(sparkline([1.0, 2.0], 20)) == 2  # never wider than the series
    assert sparkline([1.0, math.inf, 1.0], 3)[1] == "!"
    assert sparkline([], 10) == ""


def test_render_text_table_and_findings():
    text = render_text(step_trajectory(), width=120)
    assert "lr-SGD (SGD, 50 optimizer steps)" in text
    assert "lr-AdamW (AdamW, 50 optimizer steps)" in text
    # Rows carry the series names LearningRateMonitor logs: lr-SGD for a single group.
    sgd_row = next(line for line in text.splitlines() if line.strip().startswith("lr-SGD ") and "(SGD" not in line)
    assert sgd_row.split()[1:6] == ["0.1", "0.00625", "0.1", "0.00625", "4"]
    head_row = next(line for line in text.splitlines() if line.strip().startswith("lr-AdamW/head "))
    assert "LR002" in head_row and head_row.split()[1] == "0.0002" and head_row.split()[3] == "0.005"
    body_row = next(line for line in text.splitlines() if line.strip().startswith("lr-AdamW/backbone"))
    assert "LR002" not in body_row
    assert "▁" in sgd_row and "█" in sgd_row  # the sparkline column fits at 120 columns
    assert "1 finding:" in text
    assert "LR002 manual-lr-write-with-scheduler (lr-AdamW/head, step 20): the LR of group head" in text


def test_render_text_narrow_terminal_puts_sparklines_under_the_table():
    text = render_text(step_trajectory(), width=80)
    # Tables fit; finding lines are one line each (soft-wrapped by the terminal, greppable in logs).
    assert max(len(line.rstrip()) for line in text.splitlines() if not line.startswith("LR0")) <= 80
    assert "LR002 manual-lr-write-with-scheduler (lr-AdamW/head, step 20): the LR of group head changed" in text
    spark_lines = [line for line in text.splitlines()
                   if line.strip().startswith(("lr-AdamW/backbone ", "lr-AdamW/head ")) and "▁" in line]
    assert len(spark_lines) == 2


def test_render_empty_and_clean():
    assert "no optimizer was stepped" in render_text({"version": 1, "optimizers": [], "findings": []})
    data = step_trajectory()
    data["findings"] = []
    assert "No findings." in render_text(data)


def _group(lr):
    return json.dumps({"version": 2, "optimizers": [{"name": "lr-SGD", "steps": 3, "groups": [{"lr": lr}]}]})


@pytest.mark.parametrize(
    "content, reason",
    [("{not json", "not JSON"), (json.dumps({"version": 3, "optimizers": []}), "version 3"),
     (json.dumps({"version": 1}), "no 'optimizers' list"), (json.dumps([1, 2]), "no 'optimizers' list"),
     (json.dumps({"version": 1, "optimizers": [{"name": "lr-SGD", "groups": [{"name": "pg1"}]}]}), "no 'lr' list"),
     (json.dumps({"version": 1, "optimizers": [{"groups": [{"lr": ["a"]}]}]}), "'a' is not a number"),
     (json.dumps({"version": 2, "optimizers": [{"groups": 5}]}), "no 'groups' list"),
     (json.dumps({"version": 2, "optimizers": ["SGD"]}), "no 'groups' list"),
     (json.dumps({"version": 2, "optimizers": [{"steps": "many", "groups": []}]}), "steps 'many'"),
     (_group([[0.1, 0]]), "not a [value, count] run"), (_group([[0.1, 2, 3]]), "not a [value, count] run"),
     (_group([[0.1, 4]]), "more values than its 3 steps"), (_group({"x": 1}), "is not a list"),
     (json.dumps({"version": 2, "optimizers": [{"steps": 1, "groups": [{"same_as": 0}]}]}), "not an earlier group"),
     (json.dumps({"version": 2, "optimizers": [{"groups": []}]}), "has no 'steps'"),
     (json.dumps({"version": 2, "optimizers": [{"steps": 10 ** 12, "groups": [{"lr": [[0.1, 10 ** 12]]}]}]}),
      "more than the 20000000 values lraudit reads"),
     (json.dumps({"version": 2, "optimizers": [], "findings": [{"step": 1}]}), "finding is not an object"),
     (json.dumps({"version": 2, "optimizers": [], "findings": [{"rule": "LR001", "step": "x"}]}), "not an integer"),
     (json.dumps({"version": 2, "optimizers": [], "findings": {}}), "'findings' is not a list"),
     ("[" * 100000, "not JSON"), (b"\xff\xfe{", "not JSON")],
)
def test_load_rejects_what_is_not_a_trajectory(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TrajectoryError, match=re.escape(reason)):
        load_trajectory(path)
    result = CliRunner().invoke(report_command, [str(path)])
    assert result.exit_code == 2 and reason in result.output
    assert "not a trajectory" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_report_missing_file(tmp_path):
    result = CliRunner().invoke(report_command, [str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "cannot read" in result.output


def _png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(str(path))


def _red_pixels(img):
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 0.9) & (g < 0.2) & (b < 0.2)).sum())


def test_cli_report_with_png(trajectory_file, tmp_path):
    out, out_log = tmp_path / "lr.png", tmp_path / "lr-log.png"
    result = CliRunner().invoke(report_command, [str(trajectory_file), "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert "lr-AdamW" in result.output and f"plot written to {out}" in result.output
    img = _png(out)
    assert img.shape[:2] == (670, 1000)  # two panels (one per optimizer): 10 x 6.7 inches at 100 dpi
    assert _red_pixels(img) > 20  # the finding's red cross and label are drawn
    result = CliRunner().invoke(report_command, [str(trajectory_file), "--png", str(out_log), "--log"])
    assert result.exit_code == 0, result.output
    assert out_log.read_bytes() != out.read_bytes()


def test_plot_handles_zero_nan_and_empty(tmp_path):
    data = {"version": 1, "optimizers": [
        {"name": "lr-SGD", "class": "SGD", "steps": 4, "groups": [{"name": "pg1", "lr": [0.0, 0.1, math.nan, 0.1]}]},
        {"name": "lr-Adam", "class": "Adam", "steps": 0, "groups": [{"name": "pg1", "lr": []}]}],
        "findings": [{"rule": "LR014", "message": "NaN LR", "step": 3, "group": 0, "optimizer": "lr-SGD"},
                     {"rule": "LR005", "message": "never stepped", "step": None, "group": None, "optimizer": None}]}
    for log in (False, True):
        path = plot_mod.plot_trajectory(data, tmp_path / f"z{log}.png", log=log)
        assert _red_pixels(_png(tmp_path / f"z{log}.png")) > 0, path  # LR014 at a NaN: a red vertical line
    plot_mod.plot_trajectory({"version": 1, "optimizers": [], "findings": []}, tmp_path / "empty.png")
    assert _png(tmp_path / "empty.png").shape[:2] == (480, 1000)


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"torch-lraudit\[plot\]"):
        plot_mod.plot_trajectory(step_trajectory(), tmp_path / "x.png")


def test_lraudit_report_needs_no_torch(trajectory_file, tmp_path):
    code = (
        "import sys\n"
        "from lraudit.cli import main\n"
        "try:\n"
        "    main(['report', sys.argv[1], '--png', sys.argv[2]])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(trajectory_file), str(tmp_path / "x.png")],
                   cwd=ROOT, check=True, timeout=60)


def _label_boxes(fig):
    from lraudit.runtime.plot import _text_extent

    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        for ann in ax.texts:
            out.append((ax, ann.get_text(), _text_extent(ann, renderer)))
    return out


def test_finding_labels_never_overlap_and_stay_in_their_panel():
    lr = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 100)) for k in range(100)]
    findings = [{"rule": rule, "message": "m", "step": step, "group": 0, "optimizer": "lr-SGD"}
                for step, rule in zip(range(10, 40, 2), ["LR002", "LR004"] * 8)]
    findings.append({"rule": "LR013", "message": "m", "step": 30, "group": None, "optimizer": "lr-SGD"})
    data = {"version": 1, "optimizers": [{"name": "lr-SGD", "class": "SGD", "steps": 100, "groups": [
        {"name": "pg1", "lr": lr}, {"name": "pg2", "lr": [v / 2 for v in lr]}]}], "findings": findings}
    fig = plot_mod.figure(data)
    boxes = _label_boxes(fig)
    # 15 marks on pg1 (one of them LR002 and LR013 together) and one on pg2: 16 labels
    assert sorted(text for _, text, _ in boxes) == sorted(["LR002"] * 7 + ["LR004"] * 7 + ["LR002 LR013", "LR013"])
    for i, (ax, _, bb) in enumerate(boxes):
        frame = ax.get_window_extent(fig.canvas.get_renderer())
        assert frame.x0 <= bb.x0 and bb.x1 <= frame.x1 and frame.y0 <= bb.y0 and bb.y1 <= frame.y1
        assert not any(bb.overlaps(other) for _, _, other in boxes[i + 1:])


def test_one_panel_per_optimizer_and_a_log_axis_where_scales_differ():
    data = step_trajectory()  # lr-SGD 0.1..0.006; lr-AdamW groups 1e-3 and 2e-3: neither differs 100x
    data["optimizers"].append({"name": "lr-Adam", "class": "Adam", "steps": 50, "groups": [
        {"name": "big", "lr": [1e-2] * 50}, {"name": "tiny", "lr": [1e-6] * 50}]})
    fig = plot_mod.figure(data)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["lr-SGD (SGD)", "lr-AdamW (AdamW)", "lr-Adam (Adam)"]
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "linear", "log"]
    assert [ax.get_yscale() for ax in plot_mod.figure(data, log=True).axes] == ["log"] * 3
    assert [ax.get_yscale() for ax in plot_mod.figure(data, log=None).axes] == ["linear"] * 3
    data["optimizers"][2]["groups"][1]["lr"] = [1e-4] * 50  # exactly 100x: the small one would be flat
    assert plot_mod.figure(data).axes[2].get_yscale() == "log"
    data["optimizers"][2]["groups"][1]["lr"] = [2e-4] * 50  # 50x: still readable on a linear axis
    assert plot_mod.figure(data).axes[2].get_yscale() == "linear"
    # The small series is drawn at its own scale, not flattened under the large one's axis.
    ax = fig.axes[1]
    lo, hi = ax.get_ylim()
    assert hi < 0.01


def test_momentum_gets_its_own_panel():
    data = {"version": 2, "optimizers": [{"name": "lr-SGD", "class": "SGD", "steps": 4, "groups": [
        {"name": "pg1", "lr": [0.1, 0.2, 0.3, [0.4, 1]], "momentum": [0.95, 0.9, [1.05, 2]]}]}],
        "findings": [{"rule": "LR022", "message": "m", "step": 2, "group": 0, "optimizer": "lr-SGD"}]}
    fig = plot_mod.figure(data)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["lr-SGD (SGD)", "lr-SGD (SGD): momentum and betas"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["LR022"] and not fig.axes[0].texts
    [line] = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "lr-SGD-momentum"]
    assert list(line.get_ydata()) == [0.95, 0.9, 1.05, 1.05, 1.05]
    # LR022 shows on the momentum / beta series that left [0, 1), not on those that stayed inside
    text = render_text(data, width=120)
    assert next(ln for ln in text.splitlines() if ln.strip().startswith("lr-SGD-momentum")).split()[6] == "LR022"
    data["optimizers"][0]["groups"][0]["momentum"] = [0.95, 0.9, [0.85, 2]]
    assert "LR022" not in next(ln for ln in render_text(data, width=120).splitlines()
                               if ln.strip().startswith("lr-SGD-momentum"))
    data["optimizers"][0]["groups"].append({"name": "head", "lr": [[0.2, 4]], "momentum": [[0.9, 4]]})
    titles = [ax.get_title(loc="left") for ax in plot_mod.figure(data).axes]  # groups share their panels
    assert titles == ["lr-SGD (SGD)", "lr-SGD (SGD): momentum and betas"]


def test_readme_trajectory_example_is_a_trajectory():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("The trajectory file (version 2", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    [opt] = load_trajectory_dict(json.loads(block)).optimizers
    assert [len(g.lr) + g.start for g in opt.groups] == [opt.steps] * 3
    assert opt.groups[1].lr == opt.groups[0].lr and opt.groups[2].params["momentum"][:2] == [0.95, 0.94]
