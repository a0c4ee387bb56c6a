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
PyTorch's default, a count, or ``auto``: the fastest count, re-measured every 30 s, see
``srops.models.threads``), ``val.tb_crop`` (side in HR pixels of the validation crops shown in TensorBoard),
``val.folders`` (validation folders instead of ``data.val``), ``train.pyramid`` (train on the network's
``forward_pyramid``, LapSRN: the loss is summed over its levels; it configures what the loss is applied to,
so it is a training key; the old spelling ``loss.pyramid`` still works for one release, with a
``FutureWarning``: see :data:`DEPRECATED_KEYS`).

Every key of a file or of ``--set`` must be one of :data:`DEFAULTS` (or :data:`EXTRA_KEYS`), or, in
``model`` and ``gan.discriminator``, an argument of the network's constructor; anything else is a
ValueError naming the nearest valid key.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
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

@dataclass(frozen=True)
class Rule:
    """What one config key accepts.

    ``kind``: ``int`` (an integer; a float with an integral value, e.g. ``1e6``, is taken as that integer),
    ``number`` (int or float, finite), ``bool`` (true/false), ``str``, ``folders`` (a folder or a non-empty
    list of folders), ``numbers`` (a list of ``length`` numbers, each in range), ``ints`` (a list of
    integers, each in range), ``mapping``. ``lo``/``hi``: inclusive bounds, ``gt``/``lt``: exclusive ones;
    ``choices``: the allowed values of a ``str``; ``null``: None is allowed; ``also``: further values allowed
    besides the kind (``train.threads: auto``).
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple = ()
    null: bool = False
    also: tuple = ()
    length: int | None = None

    def describe(self) -> str:
        kinds = {"int": "an integer", "number": "a number", "bool": "true or false", "str": "a string",
                 "folders": "a folder or a list of folders", "mapping": "a mapping",
                 "numbers": f"a list of {self.length} numbers", "ints": "a list of integers"}
        text = kinds[self.kind]
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = [f">= {_num(self.lo)}" if self.lo is not None else "", f"> {_num(self.gt)}" if self.gt is not None
                  else "", f"<= {_num(self.hi)}" if self.hi is not None else "",
                  f"< {_num(self.lt)}" if self.lt is not None else ""]
        bounds = [b for b in bounds if b]
        if bounds:
            text += (", each " if self.kind in ("numbers", "ints") else " ") + " and ".join(bounds)
        extra = [repr(a) for a in self.also] + (["null"] if self.null else [])
        return text + "".join(f" or {e}" for e in extra)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


_POS_INT, _NONNEG_INT = Rule("int", lo=1), Rule("int", lo=0)
_BOOL, _POS_NUM, _NONNEG_NUM = Rule("bool"), Rule("number", gt=0), Rule("number", lo=0)

#: The value rules, one per key: applied to every config by :func:`check_values` (at :func:`load_config`
#: and when a :class:`~srops.models.trainer.Trainer` is built). Every key of :data:`DEFAULTS` has one.
RULES: dict[str, Rule] = {
    "model.name": Rule("str"),
    "model.scale": _POS_INT,
    "data.train": Rule("folders"),
    "data.val": Rule("folders", null=True),
    "data.lr_patch": _POS_INT,
    "data.batch_size": _POS_INT,
    "data.augment": _BOOL,
    "data.iters_per_epoch": _POS_INT,
    "data.cache_dir": Rule("str", null=True),
    "data.num_workers": _NONNEG_INT,
    "data.skip_small": _BOOL,
    "optim.lr": _POS_NUM,
    "optim.betas": Rule("numbers", lo=0, lt=1, length=2),
    "optim.eps": _NONNEG_NUM,
    "optim.weight_decay": _NONNEG_NUM,
    "schedule.name": Rule("str", choices=("step", "cosine")),
    "schedule.step_size": _POS_INT,
    "schedule.gamma": _POS_NUM,
    "schedule.step_epochs": _POS_INT,
    "schedule.milestones": Rule("ints", lo=1),
    "schedule.progress_milestones": Rule("numbers", gt=0, hi=1),
    "schedule.progress_gamma": _POS_NUM,
    "schedule.warmup_iters": _NONNEG_INT,
    "schedule.min_lr": _NONNEG_NUM,
    "loss.name": Rule("str"),
    "loss.eps": _POS_NUM,
    "loss.pyramid": _BOOL,  # deprecated: DEPRECATED_KEYS
    "train.pyramid": _BOOL,
    "loss.weights": Rule("mapping"),
    "train.iters": Rule("int", lo=0, null=True),
    "train.epochs": Rule("int", lo=1, null=True),
    "train.seed": _NONNEG_INT,
    "train.amp": Rule("str", choices=("bf16", "fp16"), null=True),
    "train.grad_clip": Rule("number", gt=0, null=True),
    "train.out_dir": Rule("str"),
    "train.log_every": _POS_INT,
    "train.ckpt_every": _POS_INT,
    "train.time_budget": Rule("number", gt=0, null=True),
    "train.device": Rule("str", choices=("auto", "cpu", "cuda")),
    "train.progress": _BOOL,
    "train.tensorboard": _BOOL,
    "train.ema_decay": Rule("number", gt=0, lt=1, null=True),
    "train.channels_last": _BOOL,
    "train.threads": Rule("int", lo=1, null=True, also=("auto",)),
    "val.every": _POS_INT,
    "val.max_images": Rule("int", lo=1, null=True),
    "val.crop_border": Rule("int", lo=0, null=True),
    "val.folders": Rule("folders", null=True),
    "val.tb_crop": _POS_INT,
    "gan": Rule("mapping", null=True),
    "gan.adv_weight": _NONNEG_NUM,
}


def _in_range(rule: Rule, x: float) -> bool:
    return ((rule.lo is None or x >= rule.lo) and (rule.hi is None or x <= rule.hi)
            and (rule.gt is None or x > rule.gt) and (rule.lt is None or x < rule.lt))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_int(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return int(x)
    return None


def _conform(rule: Rule, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` satisfies ``rule``, the value to store: integral floats become ints)."""
    if value is None:
        return rule.null, value
    if value in rule.also and not isinstance(value, bool):
        return True, value
    kind = rule.kind
    if kind == "int":
        n = _as_int(value)
        return (n is not None and _in_range(rule, n)), n if n is not None else value
    if kind == "number":
        return _is_number(value) and _in_range(rule, float(value)), value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "str":
        return isinstance(value, str) and value != "" and (not rule.choices or value in rule.choices), value
    if kind == "folders":
        items = [value] if isinstance(value, str) else value
        return isinstance(items, list) and bool(items) and all(isinstance(v, str) and v for v in items), value
    if kind == "mapping":
        return isinstance(value, dict), value
    if kind in ("numbers", "ints"):
        if not isinstance(value, (list, tuple)) or (rule.length is not None and len(value) != rule.length):
            return False, value
        items = [_as_int(v) for v in value] if kind == "ints" else list(value)
        ok = all((v is not None if kind == "ints" else _is_number(v)) and _in_range(rule, float(v)) for v in items)
        return ok, (items if ok else value)
    raise AssertionError(f"unknown rule kind {kind!r}")


def _describe_value(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})" if value is not None else "null"


def _holder(cfg: dict, key: str) -> tuple[dict | None, str]:
    """The block of ``cfg`` that holds dotted ``key``'s last part (None where a block on the way is missing), and
    that part."""
    *parents, leaf = key.split(".")
    node: Any = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def check_values(cfg: dict, source: str, only: str | None = None) -> None:
    """Apply :data:`RULES` to ``cfg`` (every key present; ``only``: the keys under that dotted path):
    ValueError naming the first key whose value breaks its rule, what it expects and what it got. Integral
    floats given for integer keys are replaced by ints in place."""
    for key, rule in RULES.items():
        if only is not None and not (key == only or key.startswith(only + ".") or only.startswith(key + ".")):
            continue
        node, leaf = _holder(cfg, key)
        if node is None or leaf not in node:
            continue
        ok, value = _conform(rule, node[leaf])
        if not ok:
            raise ValueError(f"srops.models.train: config key '{key}' in {source} must be {rule.describe()}, "
                             f"got {_describe_value(node[leaf])}")
        node[leaf] = value


#: Valid keys that have no default (absent unless given).
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("imports",),
    "schedule": ("step_epochs", "milestones", "progress_milestones", "progress_gamma", "warmup_iters", "min_lr"),
    "loss": ("eps", "pyramid", "weights", "vgg"),
    "train": ("pyramid",),
    "loss.vgg": ("weights", "arch", "n_layers", "feature_scale", "optional"),
    "gan": ("discriminator", "adv_weight", "optim", "schedule"),
}
#: Keys that moved: old → new. A config that gives the old key still loads (the value moves to the new key, with
#: a FutureWarning naming it); giving both with different values is a ValueError. Kept for one release.
DEPRECATED_KEYS: dict[str, str] = {"loss.pyramid": "train.pyramid"}
#: Blocks whose keys are constructor arguments of a registered network.
_NETWORK_BLOCKS = ("model", "gan.discriminator")
#: Blocks whose values are free-form mappings (names chosen by the user).
_FREE_BLOCKS = ("loss.weights",)
#: Folder of the presets installed with the package (``srops/models/configs/*.yml``).
PRESETS_DIR = Path(__file__).resolve().parent / "configs"
#: The folder that holds the bundled ``data/`` (T91, Set5): the repository root in a checkout (``data/`` at
#: its top), the ``srops`` package folder in an installed copy (the wheel installs the images as ``srops/data/``).
CHECKOUT_ROOT = next((d for d in Path(__file__).resolve().parents[1:3] if (d / "data" / "T91").is_dir()),
                     Path(__file__).resolve().parents[2])


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|"
               r"^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?$|"
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


def upgrade_keys(cfg: dict, source: str) -> dict:
    """``cfg`` with every key of :data:`DEPRECATED_KEYS` moved to its new name (a copy where one moves).

    Warns (``FutureWarning``) once per moved key, naming ``source``; a ValueError where the old and the
    new key are both given with different values.
    """
    out = cfg
    for old, new in DEPRECATED_KEYS.items():
        holder, old_leaf = _holder(out, old)
        if holder is None or old_leaf not in holder:
            continue
        out = copy.deepcopy(out) if out is cfg else out
        holder = _holder(out, old)[0]  # in the copy
        assert holder is not None  # found above
        value = holder.pop(old_leaf)
        *parents, leaf = new.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if leaf in node and node[leaf] != value:
            raise ValueError(f"srops.models.train: config key '{old}' in {source} is the old name of '{new}', "
                             f"and both are given with different values ({value!r}, {node[leaf]!r}): give '{new}' only")
        node[leaf] = value
        warnings.warn(f"srops.models.train: config key '{old}' in {source} is deprecated and will be removed in the "
                      f"next release: write '{new}: {json.dumps(value)}' instead", FutureWarning, stacklevel=3)
    return out


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS ← YAML file ← ``key.path=value`` overrides (values parsed as YAML).

    ``path`` may be a file or an installed preset's name. Unknown keys raise ValueError.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = resolve_config(path)
        with open(path) as fh:
            tree: Any = parse_yaml(fh.read()) or {}
        source = f"config file {str(path)!r}"
        check_keys(tree, source)
        cfg = upgrade_keys(_merge(cfg, tree), source)
        check_values(cfg, source)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"srops.models.train: '--set' expects key.path=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.strip().split(".")
        value = parse_yaml(raw)
        tree = value
        for part in reversed(parts):
            tree = {part: tree}
        check_keys(tree, f"--set {item!r}", check_networks=False)
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        check_keys(cfg, f"--set {item!r}")  # a network argument, now that the network's name is known
        check_values(cfg, f"--set {item!r}", only=key.strip())
        if key.strip() in DEPRECATED_KEYS:  # a later --set of the new key wins over the file's value
            block, leaf = _holder(cfg, DEPRECATED_KEYS[key.strip()])
            if block is not None:
                block.pop(leaf, None)
        cfg = upgrade_keys(cfg, f"--set {item!r}")
    return cfg
