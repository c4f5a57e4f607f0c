"""Cost of locating notebook findings in the raw `.ipynb` text (SARIF/GitHub regions), against the
`json.loads` lraudit does anyway to read the notebook.

    python bench/notebook_positions.py                     # notebooks under /work/corpus/src
    python bench/notebook_positions.py PATH [PATH ...]     # notebooks or trees of them

Builds a synthetic notebook too (200 code cells and 2 MB of base64 output, the shape that made a
naive string scanner slow), so the run says something even without a corpus. Prints MB/s of both and
their ratio, measured in one run; nothing is asserted. The scan runs only for notebooks with
something to report in --format sarif/github.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lraudit.notebook import raw_positions  # noqa: E402


def synthetic() -> str:
    blob = base64.b64encode(os.urandom(1_500_000)).decode()
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": i, "outputs": [],
              "source": [f'x{i} = "a \\"quoted\\" é"\n', f"optimizer.step()  # {i}\n"]} for i in range(200)]
    cells[100]["outputs"] = [{"output_type": "display_data", "data": {"image/png": blob}, "metadata": {}}]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def texts(args):
    paths = []
    for arg in args or (["/work/corpus/src"] if Path("/work/corpus/src").is_dir() else []):
        p = Path(arg)
        paths += sorted(p.rglob("*.ipynb")) if p.is_dir() else [p]
    out = [("synthetic", synthetic())]
    for p in paths:
        try:
            out.append((str(p), p.read_text(encoding="utf-8-sig")))
        except (OSError, UnicodeDecodeError):
            pass
    return out


def best(fn, items, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _, text in items:
            fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    items = texts(sys.argv[1:])
    size = sum(len(t) for _, t in items) / 1e6
    scan = best(raw_positions, items)
    parse = best(json.loads, items)
    print(f"{len(items)} notebooks, {size:.1f} MB (1 synthetic)")
    print(f"raw_positions : {scan:.3f} s  {size / scan:.1f} MB/s")
    print(f"json.loads    : {parse:.3f} s  {size / parse:.1f} MB/s")
    print(f"ratio scan / json.loads: {scan / parse:.1f}x")


if __name__ == "__main__":
    main()
