"""The training-loop model of one module (names, events, order). Knows nothing of the rules."""
from __future__ import annotations

import re

from lraudit.analysis.model import Model, build_model

__all__ = ["Model", "build_model", "may_contain_findings", "PREFILTER"]

# Every rule's trigger mentions one of these: an optimizer (``optim``, transformers' ``AdamW`` /
# ``Adafactor``), a scheduler (``schedul``, ``lr_scheduler``, scheduler class names) or a manual
# LR write (``param_groups``). Files without any of them cannot hold a finding and are not parsed.
PREFILTER = re.compile(rb"optim|schedul|param_groups|Adam|Adafactor|LambdaLR|StepLR|OneCycleLR|CyclicLR")


def may_contain_findings(text) -> bool:
    """Cheap text test run before parsing (accepts str or bytes)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return PREFILTER.search(text) is not None
