"""Train an SR network from a YAML experiment file or an installed preset.

    python -m srops.models.train --list                          # the installed presets
    python -m srops.models.train -c drfn_x4 [--set key.path=value ...] [--resume]
    python -m srops.models.train -c my_experiment.yml ...
    torchrun --nproc_per_node=2 -m srops.models.train -c ...    # DistributedDataParallel

The YAML blocks mirror constructor arguments: ``model`` ({name, scale, **kwargs} for
``srops.models.build``), ``data`` (folders, patch, batch), ``optim`` (Adam), ``schedule`` (step decay or
cosine with warm-up), ``loss`` (``l1``, ``mse``, ``charbonnier``, ``vgg`` and their weighted sums), ``train``
(iterations, precision, clipping, EMA, output folder), ``val`` and, for GAN training, ``gan``. Every key not
given takes its value from :data:`DEFAULTS`; an unknown key is an error naming the nearest valid one.
``--set`` values are parsed as YAML.

The presets train on the bundled ``data/T91`` and validate on ``data/Set5``; images smaller than the LR patch
are skipped with one summary line (``data.skip_small``). For the papers' DIV2K setting point the training
folder at it: ``--set 'data.train=[/path/to/DIV2K/DIV2K_train_HR]'``.

Checkpoints (``<out_dir>/last.pt``, see :mod:`srops.models.trainer`) let ``--resume`` continue exactly
where the run stopped. SIGTERM or Ctrl-C saves a checkpoint and exits with status 128 + the signal number.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch.distributed as dist

from srops.models.runstate import save_atomic  # noqa: F401  (re-exported)
from srops.models.config import DEFAULTS, list_presets, load_config, parse_yaml  # noqa: F401  (re-exported)
from srops.models.trainer import NonFiniteLossError, Trainer, import_modules  # noqa: F401  (re-exported)


def run(cfg: dict, resume: bool = False) -> tuple[Trainer, dict]:
    """Build a :class:`Trainer` from ``cfg`` and train; returns it and the last validation result."""
    trainer = Trainer(cfg, resume=resume)
    return trainer, trainer.fit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", help="experiment YAML, or the name of an installed preset (see --list)")
    ap.add_argument("--list", action="store_true", help="list the installed presets and exit")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry, e.g. --set train.iters=10 (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt")
    args = ap.parse_args(argv)
    if args.list:
        for name, line in list_presets().items():
            print(f"{name:22s} {line}")
        return 0
    if args.config is None:
        ap.error("give -c/--config (a YAML file or a preset name; --list shows the presets)")
    try:
        cfg = load_config(args.config, args.set)
        trainer, res = run(cfg, resume=args.resume)
    except (FileNotFoundError, ValueError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    stopped_by = res.pop("stopped_by", None)
    if int(os.environ.get("RANK", "0")) == 0:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))
        if stopped_by:
            print(f"stopped by {stopped_by} after iteration {trainer.iteration}; checkpoint "
                  f"{str(trainer.ckpt_path)!r} saved, continue with --resume", file=sys.stderr)
    if stopped_by:
        import signal

        return 128 + int(signal.Signals[stopped_by])
    return 0


if __name__ == "__main__":
    sys.exit(main())
