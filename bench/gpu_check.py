"""Deprecated: the device check moved to ``tools/gpu_check.py``; this shim runs it (with a deprecation note)
for one release. Not a benchmark: pytest collects only ``bench_*.py`` here."""
if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench._moved import run_moved

    run_moved("gpu_check", also=" or make gpu-check")
else:
    from bench._moved import warn_import

    warn_import("gpu_check")
    from tools.gpu_check import *  # noqa: E402,F401,F403
