"""PEP 517 build backend of srops: setuptools, plus the torch the extension is compiled against.

``srops._C`` is compiled with ``torch.utils.cpp_extension`` against one torch
release; PyTorch keeps no C++ ABI between releases, so the binary only loads
beside that same release. An isolated build (plain ``pip install .``,
``python -m build``) starts from an empty environment, so this backend asks for
the torch that will run the extension:

* the torch already installed in the environment being installed into, if any
  (same version, local label included, e.g. ``2.13.0+cpu``);
* otherwise ``DEFAULT_TORCH``, the release pinned in requirements.txt;
* ``SROPS_BUILD_TORCH=<version>`` chooses explicitly;
* ``SROPS_NO_EXT=1`` asks for no torch (pure-Python package).

setup.py then pins the wheel's runtime dependency to ``torch==<the build's
torch>``, so an installer never pairs the binary with another release.
The hooks that run before torch is installed (the requirement queries) and the
sdist hooks run setup.py with ``SROPS_SETUP_WITHOUT_TORCH=1``: it then
describes the package without the extension and imports no torch. Everything
else is setuptools' own backend.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (re-exported hooks)
    build_editable,
    build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

DEFAULT_TORCH = "2.14.1"

_PROBE = (
    "import importlib.metadata as m\n"
    "try:\n    print(m.version('torch'))\n"
    "except m.PackageNotFoundError:\n    pass\n"
)


def installed_torch(python: str = sys.executable) -> str | None:
    """The torch version installed for ``python`` outside the build environment, or None.

    pip runs the build hooks with the target interpreter but hides its
    site-packages behind ``PYTHONPATH``; the probe runs without it.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run([python, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    return version or None


def build_torch() -> str | None:
    """The torch version the extension is to be built against (None: no extension)."""
    if os.environ.get("SROPS_NO_EXT", "0") == "1":
        return None
    return os.environ.get("SROPS_BUILD_TORCH") or installed_torch() or DEFAULT_TORCH


def _with_torch(requires: list[str]) -> list[str]:
    version = build_torch()
    if version is None:
        return requires
    print(f"srops: building against torch=={version}", file=sys.stderr)
    return requires + [f"torch=={version}"]


@contextlib.contextmanager
def _without_torch() -> Iterator[None]:
    old = os.environ.get("SROPS_SETUP_WITHOUT_TORCH")
    os.environ["SROPS_SETUP_WITHOUT_TORCH"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["SROPS_SETUP_WITHOUT_TORCH"]
        else:
            os.environ["SROPS_SETUP_WITHOUT_TORCH"] = old


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    with _without_torch():
        return _with_torch(_setuptools.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings=None) -> list[str]:
    with _without_torch():
        return _with_torch(_setuptools.get_requires_for_build_editable(config_settings))


def get_requires_for_build_sdist(config_settings=None) -> list[str]:
    with _without_torch():
        return _setuptools.get_requires_for_build_sdist(config_settings)


def build_sdist(sdist_directory, config_settings=None) -> str:
    with _without_torch():
        return _setuptools.build_sdist(sdist_directory, config_settings)
