"""Deprecated: moved to ``tools/nonlocal_cpu_interleaved.py``; this shim runs it (with a deprecation note) for one release."""
if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench._moved import run_moved

    run_moved("nonlocal_cpu_interleaved")
else:
    from bench._moved import warn_import

    warn_import("nonlocal_cpu_interleaved")
    from tools.nonlocal_cpu_interleaved import *  # noqa: E402,F401,F403
