"""Exceptions shared by both halves (torch-free)."""


class LRAuditError(AssertionError):
    """Raised by ``audit(strict=True)`` at exit when findings were recorded; lists them."""

    def __init__(self, message: str, findings=()):
        super().__init__(message)
        self.findings = list(findings)
