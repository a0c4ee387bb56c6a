"""One sub-package per op; importing this registers every op's backends."""
from srops.ops.cbam import frontend as _cbam  # noqa: F401
from srops.ops.covpool import frontend as _covpool  # noqa: F401
from srops.ops.nonlocal_attention import frontend as _nonlocal  # noqa: F401
