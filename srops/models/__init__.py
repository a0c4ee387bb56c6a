"""SR networks built on srops ops (installed as ``srops.models``).

    import srops.models
    srops.models.list_models()
    net = srops.models.build("amms", scale=2)
"""
from srops.models import archs  # noqa: F401  (registers every network)
from srops.models.registry import build, list_models, register

__all__ = ["build", "list_models", "register"]
