"""Test-wide setup."""
import inspect

import click.testing

# click < 8.2 (the last releases for Python 3.9) mixes stderr into stdout unless asked not to; 8.2+
# always captures it apart. The tests read ``result.stderr``: make the old runner behave like the new.
if "mix_stderr" in inspect.signature(click.testing.CliRunner.__init__).parameters:
    _original_init = click.testing.CliRunner.__init__

    def _init(self, *args, mix_stderr=False, **kwargs):
        _original_init(self, *args, mix_stderr=mix_stderr, **kwargs)

    click.testing.CliRunner.__init__ = _init
