"""Deprecated: moved to ``tools/sass_cuda.py``; this shim runs it (with a deprecation note) for one release."""
if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench._moved import run_moved

    run_moved("sass_cuda")
else:
    from bench._moved import warn_import

    warn_import("sass_cuda")
    from tools.sass_cuda import *  # noqa: E402,F401,F403
