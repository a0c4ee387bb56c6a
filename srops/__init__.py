"""srops: fast, memory-efficient attention operators for image super-resolution.

    from srops import NonLocal2d, SecondOrderAttention, CBAM, ChannelAttention, SpatialAttention
    import srops.functional as F
    srops.backends()   # per op and backend: "ok" or why it cannot run here
    srops.BACKEND_NAMES  # every backend name ("cuda", "triton", "cpu", "sdpa", "reference")

Importing srops loads the compiled extension if present and never touches CUDA.
"""
from srops import _ext, functional, ops  # noqa: F401  (ops registers every backend)
from srops._backend import BACKEND_NAMES, BackendUnavailableError, backends
from srops.nn import CBAM, ChannelAttention, NonLocal2d, SecondOrderAttention, SpatialAttention

__version__ = "0.1.0"

__all__ = [
    "NonLocal2d",
    "SecondOrderAttention",
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "functional",
    "backends",
    "BACKEND_NAMES",
    "BackendUnavailableError",
    "__version__",
]
