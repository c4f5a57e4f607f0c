"""lraudit: a training-loop linter and runtime learning-rate auditor for PyTorch.

``import lraudit`` never imports torch: the runtime half (``audit``) is loaded on first use.
"""
from lraudit.errors import LRAuditError

__version__ = "0.2.0"
__all__ = ["audit", "LRAuditError", "__version__"]


def __getattr__(name):
    # Lazy: the runtime half imports torch, which `lraudit check` must never need.
    if name == "audit":
        try:
            from lraudit.runtime import audit
        except ModuleNotFoundError as exc:
            if exc.name != "torch" and not (exc.name or "").startswith("torch."):
                raise
            raise ModuleNotFoundError(
                "lraudit.audit needs PyTorch, which is not installed: pip install 'torch-lraudit[runtime]'",
                name=exc.name,
            ) from exc
        return audit
    raise AttributeError(f"module 'lraudit' has no attribute {name!r}")
