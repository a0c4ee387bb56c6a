"""Experiment configuration for ``srops.models.train``: defaults, YAML loading, ``--set`` overrides,
unknown-key checks and the installed presets.

Blocks mirror constructor arguments: ``model`` ({name, scale, **kwargs} for ``srops.models.build``;
``imports``: extra modules that register networks), ``data`` (folders, patch, batch), ``optim`` (Adam),
``schedule`` (``name: step`` with ``step_size`` or ``step_epochs`` or ``milestones``, ``gamma``;
``name: cosine`` with ``warmup_iters`` and ``min_lr``; ``progress_milestones`` / ``progress_gamma`` for
time-budgeted runs), ``loss``, ``train``, ``val`` and, for GAN training, ``gan``.

Keys beyond the papers' settings: ``data.skip_small`` (leave out training images smaller than the LR patch,
with one summary line; false: a ValueError naming them), ``train.ema_decay`` (EMA of the weights, used for
validation and ``best.pt``), ``train.time_budget`` (seconds of training, final validation and checkpoint
included, continued across resumes), ``train.channels_last`` (network and batches in NHWC memory
layout: faster convolutions on CPU, most with ``train.amp: bf16``), ``train.threads`` (CPU threads: null for
PyTorch's default, a count, or ``auto``: the fastest count, re-measured every 30 s, see ``srops.models.threads``), ``val.tb_crop`` (side in HR pixels of the validation crops shown in
TensorBoard), ``val.folders`` (validation folders instead of ``data.val``).

Every key of a file or of ``--set`` must be one of :data:`DEFAULTS` (or :data:`EXTRA_KEYS`), or, in
``model`` and ``gan.discriminator``, an argument of the network's constructor; anything else is a
ValueError naming the nearest valid key.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "model": {"name": "amms", "scale": 2},
    "data": {"train": ["data/T91"], "val": ["data/Set5"], "lr_patch": 48, "batch_size": 16,
             "augment": True, "iters_per_epoch": 1000, "cache_dir": None, "num_workers": 0, "skip_small": True},
    "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "schedule": {"name": "step", "step_size": 200000, "gamma": 0.5},
    "loss": {"name": "l1"},
    "train": {"iters": 1000, "epochs": None, "seed": 0, "amp": None, "grad_clip": None, "out_dir": "runs/default",
              "log_every": 50, "ckpt_every": 1000, "time_budget": None, "device": "auto",
              "progress": True, "tensorboard": True, "ema_decay": None,
              "channels_last": False, "threads": None},
    "val": {"every": 1000, "max_images": None, "crop_border": None, "folders": None, "tb_crop": 64},
    "gan": None,
}

#: Valid keys that have no default (absent unless given).
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("imports",),
    "schedule": ("step_epochs", "milestones", "progress_milestones", "progress_gamma", "warmup_iters", "min_lr"),
    "loss": ("eps", "pyramid", "weights", "vgg"),
    "loss.vgg": ("weights", "arch", "n_layers", "feature_scale", "optional"),
    "gan": ("discriminator", "adv_weight", "optim", "schedule"),
}
#: Blocks whose keys are constructor arguments of a registered network.
_NETWORK_BLOCKS = ("model", "gan.discriminator")
#: Blocks whose values are free-form mappings (names chosen by the user).
_FREE_BLOCKS = ("loss.weights",)
#: Folder of the presets installed with the package (``models/configs/*.yml``).
PRESETS_DIR = Path(__file__).resolve().parent / "configs"
#: The repository root in a checkout (holds the bundled ``data/``); in an installed copy the ``srops``
#: package folder, where the wheel installs the same images as ``srops/data/``.
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|" r"^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?$|"
               r"^[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _sub_defaults(block: str) -> dict:
    node: Any = {"": DEFAULTS}[""]
    for part in block.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def valid_keys(block: str) -> set[str]:
    """Keys allowed in ``block`` (``""`` for the top level, ``"loss.vgg"`` for a nested block)."""
    if block == "":
        return set(DEFAULTS)
    return set(_sub_defaults(block)) | set(EXTRA_KEYS.get(block, ())) | \
        {k.split(".")[-1] for k in EXTRA_KEYS if k.startswith(block + ".") and k.count(".") == block.count(".") + 1}


def _network_keys(name: Any) -> set[str] | None:
    """Constructor arguments of registered network ``name``; None if unknown or it takes ``**kwargs``."""
    from srops.models.registry import _REGISTRY

    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        return None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {k for k in params if k != "self"} | {"name", "imports"}


def _unknown(key: str, block: str, allowed: set[str], source: str) -> ValueError:
    full = f"{block}.{key}" if block else key
    near = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
    hint = f"did you mean '{block + '.' if block else ''}{near[0]}'?" if near else \
        f"valid keys: {', '.join(sorted(allowed))}"
    return ValueError(f"srops.models.train: unknown config key '{full}' in {source} ({hint})")


def check_keys(tree: Any, source: str, block: str = "", check_networks: bool = True) -> None:
    """ValueError for the first key of ``tree`` (a config or a part of one) that no block accepts."""
    if not isinstance(tree, dict) or block in _FREE_BLOCKS:
        return
    if block in _NETWORK_BLOCKS:
        allowed = _network_keys(tree.get("name")) if check_networks else None
        if allowed is not None:
            for key in tree:
                if key not in allowed:
                    raise _unknown(key, block, allowed, source)
        return
    allowed = valid_keys(block)
    for key, value in tree.items():
        if key not in allowed:
            raise _unknown(str(key), block, allowed, source)
        sub = f"{block}.{key}" if block else str(key)
        if sub in ("gan.optim",):
            check_keys(value, source, "optim", check_networks)
        elif sub in ("gan.schedule",):
            check_keys(value, source, "schedule", check_networks)
        elif isinstance(value, dict):
            check_keys(value, source, sub, check_networks)


def list_presets() -> dict[str, str]:
    """``{name: first comment line}`` of the installed presets."""
    out = {}
    for path in sorted(PRESETS_DIR.glob("*.yml")):
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "#")
        out[path.stem] = first.lstrip("# ").strip()
    return out


def resolve_config(path: str | os.PathLike) -> Path:
    """A config file path, or the name of an installed preset (``drfn_x4`` or ``drfn_x4.yml``)."""
    p = Path(path)
    if p.is_file():
        return p
    name = p.name[:-4] if p.name.endswith(".yml") else p.name
    if p.parent == Path(".") and (PRESETS_DIR / f"{name}.yml").is_file():
        return PRESETS_DIR / f"{name}.yml"
    presets = ", ".join(list_presets())
    raise FileNotFoundError(f"srops.models.train: config file {str(path)!r} does not exist and is not the name "
                            f"of an installed preset ({presets}; see --list)")


def resolve_folder(folder: str | os.PathLike) -> str:
    """``folder`` as given, or under the checkout root when a relative path is missing from the working
    folder but present there (the bundled ``data/T91``, ``data/Set5`` from any working folder)."""
    p = Path(folder)
    if not p.is_absolute() and not p.exists() and (CHECKOUT_ROOT / p).is_dir():
        return str(CHECKOUT_ROOT / p)
    return str(folder)


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS ← YAML file ← ``key.path=value`` overrides (values parsed as YAML).

    ``path`` may be a file or an installed preset's name. Unknown keys raise ValueError.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = resolve_config(path)
        with open(path) as fh:
            tree = parse_yaml(fh.read()) or {}
        check_keys(tree, f"config file {str(path)!r}")
        cfg = _merge(cfg, tree)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"srops.models.train: '--set' expects key.path=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.strip().split(".")
        value = parse_yaml(raw)
        tree: Any = value
        for part in reversed(parts):
            tree = {part: tree}
        check_keys(tree, f"--set {item!r}", check_networks=False)
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        check_keys(cfg, f"--set {item!r}")  # a network argument, now that the network's name is known
    return cfg
