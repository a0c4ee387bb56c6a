"""Deprecated name of :mod:`srops.compare_backends` (``python -m srops.demo`` still runs it, with a warning;
the training demo is ``python -m srops.models.demo``)."""
from __future__ import annotations

import warnings

from srops.compare_backends import main

if __name__ == "__main__":
    warnings.warn("python -m srops.demo is now python -m srops.compare_backends (this name goes in the next release)",
                  DeprecationWarning, stacklevel=1)
    main()
