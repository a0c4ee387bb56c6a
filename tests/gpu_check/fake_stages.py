"""Stand-in stages for the tests of the device check's driver (no torch, start in a fraction of a second)."""
from __future__ import annotations

import os
import time

from tools.gpu_check_common import Stage


def _ok(rec: dict) -> None:
    rec["value"] = 1


def quick(stage: Stage) -> None:
    """Two passing cases."""
    stage.run("a", _ok)
    stage.run("b", _ok)
    stage.info["headline"] = "quick done"


def hangs(stage: Stage) -> None:
    """Two passing cases, then a case that never ends (the driver must cut it at the stage's limit)."""
    stage.run("a", _ok)
    stage.run("b", _ok)
    stage.run("forever", lambda rec: time.sleep(3600))


def crashes(stage: Stage) -> None:
    """One passing case, then the process dies (as on a CUDA fault that takes the process down)."""
    stage.run("a", _ok)
    os._exit(3)


def fails(stage: Stage) -> None:
    """A failing case."""
    stage.run("bad", lambda rec: stage.check(False, "wrong on purpose"))
