"""Framework integrations of the runtime audit: thin adapters over ``lraudit.runtime.audit``.

- ``lraudit.integrations.lightning.LRAuditCallback``: a Lightning ``Callback`` (extra ``lightning``);
- ``lraudit.integrations.transformers.LRAuditCallback``: a transformers ``TrainerCallback``
  (extra ``transformers``);
- ``lraudit.integrations.pytest_plugin``: the ``lr_audit`` fixture and ``assert_lr_schedule``,
  registered with pytest through the ``pytest11`` entry point.

Nothing here imports torch or a framework at import time: each module imports its framework when
its callback class is first used, and names the extra to install when it is missing.
"""
import warnings


def missing_extra(framework: str, extra: str, exc: ImportError) -> ImportError:
    """The ImportError an integration raises when its framework is not installed."""
    err = ImportError(
        f"lraudit's {framework} integration needs {framework} installed: pip install 'torch-lraudit[{extra}]' "
        f"({exc})"
    )
    err.__cause__ = exc
    return err


class AuditSession:
    """One audit driven by a framework callback: started at train start, stopped at train end or on an
    exception, then reported and saved on the main process. Shared by the Lightning and transformers
    callbacks so that they stay thin."""

    def __init__(self, strict=False, expect=None, out=None, report=True, console=None, on_finding=None):
        self.strict = strict
        self.on_finding = on_finding
        self.expect = expect
        self.out = out
        self.report = report
        self.console = console
        self.run = None
        self._audit = None

    @property
    def active(self) -> bool:
        return self._audit is not None

    @property
    def audit(self):
        """The running :class:`~lraudit.runtime.auditor.Audit`, or None."""
        return self._audit

    def start(self, optimizers, schedulers=None):
        from lraudit.runtime import audit

        if self._audit is not None:  # a previous training that never reached its end
            self.stop(report=False)
        # Framework wrappers (AcceleratedOptimizer, LightningOptimizer) are fine: audit() hooks the torch
        # optimizer inside them.
        optimizers = [o for o in optimizers if o is not None]
        if not optimizers:
            return None
        self._audit = audit(optimizers, strict=self.strict, expect=self.expect, on_finding=self.on_finding,
                            schedulers=[s for s in (schedulers or []) if s is not None])
        self.run = self._audit.start()
        return self.run

    def stop(self, exc=None, main_process=True, report=None):
        """Stop the audit (idempotent). With ``strict`` and findings, the core raises ``LRAuditError``
        here, after the report is printed and the trajectory saved; never over ``exc``."""
        if self._audit is None:
            return self.run
        current, self._audit = self._audit, None
        try:
            current.stop(exc)
        finally:
            if main_process:
                self._emit(self.report if report is None else report)
        return self.run

    def _emit(self, report: bool):
        # Training is over: a trajectory that cannot be written is a warning, never an exception that
        # would replace the training's own (or strict mode's LRAuditError).
        if self.run is None:
            return
        if self.out:
            try:
                self.run.save(str(self.out))
            except OSError as exc:
                warnings.warn(f"lraudit: could not write the LR trajectory to {self.out}: {exc}", RuntimeWarning,
                              stacklevel=3)
        if report:
            from rich.console import Console

            from lraudit.runtime.trajectory_report import render_trajectory

            render_trajectory(self.run.to_dict(), self.console or Console(), title="lraudit: learning rates")
