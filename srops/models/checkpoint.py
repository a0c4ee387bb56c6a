"""Reading checkpoints with clear errors: one place for ``srops.models.train``, ``test`` and ``upscale``.

A checkpoint written by ``srops.models.train`` is a dict. ``last.pt`` holds ``model`` (the network's
``state_dict``), ``config`` (the whole experiment; ``config["model"]`` is ``{name, scale, **kwargs}``
for :func:`srops.models.build`), ``iteration`` and the training state (``optimizer``, ``scheduler``,
``scaler``, ``rng``, ``sampler``); ``best.pt`` holds ``model``, ``config``, ``iteration`` and ``psnr``.

Every failure raises :class:`CheckpointError` (a ``ValueError``; ``FileNotFoundError`` for a missing
file) whose message names the file and what is missing or does not match, so command-line tools can
print it as one ``error:`` line.

Checkpoints are read with ``torch.load(..., weights_only=True)`` only: tensors and plain Python data
(dicts, lists, tuples, strings, numbers), never code. A file that needs anything more (a checkpoint of an
older srops, whose numpy RNG state was pickled as an ndarray, or a file crafted to run code when
unpickled) is refused with :class:`UnsafeCheckpointError`, whose message gives the explicit conversion
command (:data:`CONVERT_COMMAND`, :mod:`srops.models.convert_checkpoint`) for a file the user trusts.
"""
from __future__ import annotations

import os
import pickle
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "rng", "sampler")
#: the command that rewrites a trusted checkpoint of an older srops into one that loads safely
CONVERT_COMMAND = "python -m srops.models.convert_checkpoint"
#: what torch.load(weights_only=True) says when a file needs more than tensors and plain data
_UNSAFE_MARK = "Weights only load failed"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, lacks an entry, or does not fit the network."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: reading it would unpickle arbitrary objects."""


@dataclass
class ModelSpec:
    """What a checkpoint says about its network: ``build(name, scale=scale, **kwargs)``."""

    name: str
    scale: int
    kwargs: dict = field(default_factory=dict)
    imports: list = field(default_factory=list)
    iteration: int | None = None


def convert_hint(path: str | os.PathLike) -> str:
    """The conversion command line for ``path`` (written next to it as ``<stem>.safe<suffix>``)."""
    path = Path(path)
    new = path.with_name(f"{path.stem}.safe{path.suffix}")
    return f"{CONVERT_COMMAND} {shlex.quote(str(path))} {shlex.quote(str(new))} --trust-this-file"


def _unsafe_reason(exc: BaseException) -> str:
    """What torch's weights-only refusal says the file needed (e.g. a numpy global), in one short line."""
    text = str(exc).replace("\x1b[1m", "").replace("\x1b[0m", "")
    _, sep, rest = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in rest.splitlines() if ln.strip()] if sep else []
    if not lines:
        return "it holds objects other than tensors and plain data"
    return lines[0].split(" was not an allowed global")[0].split(". Please use")[0].rstrip(".")


def load_safely(path: str | os.PathLike, map_location: Any = "cpu", who: str = "srops.models") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain data, never code.

    Raises FileNotFoundError for a missing file, :class:`UnsafeCheckpointError` (with the conversion
    command) for a file that only an unsafe load could read, and :class:`CheckpointError` for a file that
    is neither a zip archive (``torch.save``'s format) nor a pickle (its legacy format), or that torch
    cannot parse ("truncated or corrupt"). Every message names ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{who}: checkpoint file '{path}' does not exist")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"{who}: checkpoint '{path}' is truncated or corrupt: the file is empty")
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(f"{who}: cannot read checkpoint '{path}': it is not a file written by torch.save "
                              "(neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():  # a pickle of a newer protocol warns before it is refused
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _UNSAFE_MARK not in str(exc):
            raise CheckpointError(f"{who}: checkpoint '{path}' is truncated or corrupt: {exc}") from exc
        raise UnsafeCheckpointError(
            f"{who}: checkpoint '{path}' cannot be loaded safely (torch.load(weights_only=True) refused it: "
            f"{_unsafe_reason(exc)}); srops only reads "
            "tensors and plain data from a checkpoint, never code. If it is a checkpoint of an older srops "
            f"from a source you trust, convert it once with: {convert_hint(path)}") from exc
    except RuntimeError as exc:
        if "TorchScript" in str(exc):
            raise CheckpointError(f"{who}: cannot read checkpoint '{path}': it is a TorchScript archive "
                                  "(torch.jit.save), not a dict of saved state written by srops.models.train") from exc
        raise CheckpointError(f"{who}: checkpoint '{path}' is truncated or corrupt: "
                              f"RuntimeError: {str(exc).strip().splitlines()[0]}") from exc
    except Exception as exc:  # noqa: BLE001  (a truncated zip gives OSError, a cut pickle EOFError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
        raise CheckpointError(f"{who}: checkpoint '{path}' is truncated or corrupt: "
                              f"{type(exc).__name__}: {first}") from exc


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", who: str = "srops.models") -> dict:
    """:func:`load_safely` of ``path``, which must hold a dict; FileNotFoundError / CheckpointError naming
    the file otherwise."""
    blob = load_safely(path, map_location, who)
    if not isinstance(blob, dict):
        raise CheckpointError(f"{who}: checkpoint '{path}' holds a {type(blob).__name__}, not a dict of "
                              "saved state (was it written by torch.save(model) rather than by srops.models.train?)")
    return blob


def require_keys(blob: dict, keys: Iterable[str], path: str | os.PathLike, purpose: str,
                 who: str = "srops.models") -> None:
    """CheckpointError listing the entries of ``keys`` that ``blob`` lacks (``purpose`` says why they are needed)."""
    missing = [k for k in keys if k not in blob]
    if missing:
        raise CheckpointError(
            f"{who}: checkpoint '{path}' has no {', '.join(repr(k) for k in missing)} entr"
            f"{'y' if len(missing) == 1 else 'ies'}, which {purpose} needs (it holds: "
            f"{', '.join(sorted(map(str, blob))) or 'nothing'})")


def model_spec(blob: dict, path: str | os.PathLike, who: str = "srops.models") -> ModelSpec:
    """The network name, scale and constructor arguments stored in ``blob["config"]["model"]``."""
    cfg = blob.get("config")
    mcfg = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(mcfg, dict) or "name" not in mcfg or "scale" not in mcfg:
        raise CheckpointError(
            f"{who}: checkpoint '{path}' carries no model metadata (config.model.name and config.model.scale); "
            "only checkpoints written by srops.models.train (last.pt, best.pt) say which network they hold")
    kwargs = dict(mcfg)
    name, scale = kwargs.pop("name"), kwargs.pop("scale")
    imports = list(kwargs.pop("imports", None) or [])
    if not isinstance(name, str) or isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise CheckpointError(f"{who}: checkpoint '{path}' has malformed model metadata: name={name!r}, "
                              f"scale={scale!r} (expected a model name and an int >= 1)")
    it = blob.get("iteration")
    return ModelSpec(name, scale, kwargs, imports, int(it) if isinstance(it, int) else None)


def state_dict_of(blob: dict, path: str | os.PathLike, who: str = "srops.models") -> dict:
    """The network weights of ``blob``: its ``model`` entry (or ``blob`` itself if it is a bare state_dict)."""
    state = blob.get("model", blob)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{who}: checkpoint '{path}' has no network weights (no 'model' state_dict entry)")
    return state


def _describe_mismatch(net: nn.Module, state: dict, limit: int = 4) -> str:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    for label, items in (("shape mismatches", shapes), ("missing from the checkpoint", missing),
                         ("not in the network", unexpected)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: " + "; ".join(items[:limit]) + more)
    return ". ".join(parts)


def load_weights(net: nn.Module, state: dict, path: str | os.PathLike, what: str = "the network",
                 who: str = "srops.models") -> None:
    """``net.load_state_dict(state)`` (strict), or CheckpointError naming the file and the mismatching keys.

    Typical cause: a checkpoint of another network width or depth than the one built from the config.
    """
    detail = _describe_mismatch(net, state)
    if detail:
        raise CheckpointError(f"{who}: checkpoint '{path}' does not fit {what}: {detail}")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise CheckpointError(f"{who}: checkpoint '{path}' does not fit {what}: {exc}") from exc


def load_state(obj: Any, state: Any, path: str | os.PathLike, entry: str, who: str = "srops.models") -> None:
    """``obj.load_state_dict(state)`` for optimiser/scheduler/scaler state, with a CheckpointError naming
    the file and ``entry`` when the saved state does not fit (e.g. another network's optimiser)."""
    try:
        obj.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{who}: checkpoint '{path}': its '{entry}' state does not fit this run's "
                              f"{type(obj).__name__}: {type(exc).__name__}: {exc}") from exc


def build_network(spec: ModelSpec, path: str | os.PathLike, who: str = "srops.models") -> nn.Module:
    """``build(spec.name, scale=spec.scale, **spec.kwargs)`` after importing ``spec.imports``.

    Any exception of the constructor (the stored arguments come from a file) becomes one CheckpointError
    naming the file, the network and its arguments.
    """
    from srops.models import build
    from srops.models.registry import import_modules

    try:
        import_modules(spec.imports)
    except ImportError as exc:
        raise CheckpointError(f"{who}: checkpoint '{path}' needs module {exc.name!r} (config.model.imports), "
                              f"which cannot be imported: {exc}") from exc
    try:
        return build(spec.name, scale=spec.scale, **spec.kwargs)
    except Exception as exc:  # noqa: BLE001  (arguments read from a file: any failure is the file's)
        raise CheckpointError(f"{who}: checkpoint '{path}': cannot build its network {spec.name!r} ×{spec.scale} "
                              f"with arguments {spec.kwargs}: {type(exc).__name__}: {exc}") from exc


def build_from_checkpoint(path: str | os.PathLike, who: str = "srops.models") -> tuple[nn.Module, ModelSpec]:
    """Build the network a checkpoint describes and load its weights (on CPU, eval mode).

    Returns the bare network and its :class:`ModelSpec`. Raises FileNotFoundError / CheckpointError.
    """
    blob = load_checkpoint(path, who=who)
    spec = model_spec(blob, path, who)
    state = state_dict_of(blob, path, who)
    net = build_network(spec, path, who)
    load_weights(net, state, path, f"network {spec.name!r} ×{spec.scale}", who)
    return net.eval(), spec
