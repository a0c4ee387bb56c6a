"""Name → network class registry behind ``srops.models.build`` and ``list_models``."""
from __future__ import annotations

from typing import Callable, TypeVar

from torch import nn

T = TypeVar("T", bound=type[nn.Module])
_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register a network under ``name``; a second use of a name raises."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"srops.models: model name {name!r} is already registered by {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, scale: int = 4, **kwargs) -> nn.Module:
    """Instantiate the network registered as ``name`` at ``scale`` with constructor overrides ``kwargs``."""
    if name not in _REGISTRY:
        raise ValueError(f"srops.models: unknown model {name!r}; available: {', '.join(list_models()) or 'none'}")
    return _REGISTRY[name](scale=scale, **kwargs)


def import_modules(names) -> None:
    """Import the modules listed in ``model.imports`` (networks registered outside srops.models)."""
    import importlib

    for name in names or []:
        importlib.import_module(name)
