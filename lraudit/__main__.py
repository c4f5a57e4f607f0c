"""``python -m lraudit`` == the ``lraudit`` console script."""
from lraudit.cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="lraudit")
