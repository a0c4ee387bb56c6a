"""Deprecated: moved to ``tools/sass_report.py``; this shim runs it (with a deprecation note) for one release."""
if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench._moved import run_moved

    run_moved("sass_report")
else:
    from bench._moved import warn_import

    warn_import("sass_report")
    from tools.sass_report import *  # noqa: E402,F401,F403
