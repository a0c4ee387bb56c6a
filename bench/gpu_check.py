"""Deprecated: the device check moved to ``tools/gpu_check.py``; this shim goes in the next release.

``python bench/gpu_check.py [args]`` prints a deprecation note to stderr, then runs ``tools/gpu_check.py``
with the same arguments in this process and exits with its status. Importing ``bench.gpu_check`` warns
(DeprecationWarning) and gives ``tools.gpu_check``'s names. Not a benchmark: pytest collects only
``bench_*.py`` here.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOTE = ("DeprecationWarning: bench/gpu_check.py has moved to tools/gpu_check.py and this shim will be removed "
        "in the next release; run python tools/gpu_check.py (same arguments) or make gpu-check")

if __name__ == "__main__":
    print(NOTE, file=sys.stderr, flush=True)
    from tools.gpu_check import main

    sys.exit(main(sys.argv[1:]))
else:
    warnings.warn("bench.gpu_check has moved to tools.gpu_check; this alias goes in the next release",
                  DeprecationWarning, stacklevel=2)
    from tools.gpu_check import *  # noqa: E402,F401,F403
