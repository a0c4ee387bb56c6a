"""Experiment configuration for ``srops.models.train``: defaults, YAML loading, ``--set`` overrides.

Blocks mirror constructor arguments: ``model`` ({name, scale, **kwargs} for ``srops.models.build``;
``imports``: extra modules that register networks), ``data`` (folders, patch, batch), ``optim`` (Adam),
``schedule`` (``step_size`` or ``step_epochs`` or ``milestones``, ``gamma``; ``progress_milestones`` /
``progress_gamma`` for time-budgeted runs), ``loss``, ``train``, ``val`` and, for GAN training, ``gan``.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "model": {"name": "amms", "scale": 2},
    "data": {"train": ["data/T91"], "val": ["data/Set5"], "lr_patch": 48, "batch_size": 16,
             "augment": True, "iters_per_epoch": 1000, "cache_dir": None, "num_workers": 0},
    "optim": {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "schedule": {"step_size": 200000, "gamma": 0.5},
    "loss": {"name": "l1"},
    "train": {"iters": 1000, "epochs": None, "seed": 0, "amp": None, "grad_clip": None, "out_dir": "runs/default",
              "log_every": 50, "ckpt_every": 1000, "time_budget": None, "device": "auto",
              "progress": True, "tensorboard": True},
    "val": {"every": 1000, "max_images": None, "crop_border": None},
    "gan": None,
}


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


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS ← YAML file ← ``key.path=value`` overrides (values parsed as YAML)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"srops.models.train: config file {str(path)!r} does not exist")
        with open(path) as fh:
            cfg = _merge(cfg, parse_yaml(fh.read()) or {})
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"srops.models.train: '--set' expects key.path=value, got {item!r}")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[parts[-1]] = parse_yaml(raw)
    return cfg


