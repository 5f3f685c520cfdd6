"""Command line: ``python -m sklearn_metaedit demo`` (see :mod:`sklearn_metaedit.demo`)."""

from .demo._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
