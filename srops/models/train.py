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
where the run stopped. SIGTERM or Ctrl-C saves a checkpoint and exits with status 128 + the signal number;
a validation due at that iteration runs first thing on ``--resume``.

A fresh run refuses an ``out_dir`` that holds an earlier run (``last.pt``, ``best.pt``, ``log.csv`` or
TensorBoard events): continue it with ``--resume``, pick another folder, or pass ``--archive`` to rename the
earlier run to ``<out_dir>_archived_<YYYYmmdd-HHMMSS>`` and start afresh. ``<out_dir>/train.lock`` holds the
PID of the run training into the folder (rank 0 under torchrun); a second run into it is refused, and a
lock left by a process that no longer runs is taken over. Every config value is checked against
:data:`srops.models.config.RULES` before anything is built; every mistake is one ``error:`` line.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import torch.distributed as dist

from srops.models.config import DEFAULTS, list_presets, load_config, parse_yaml  # noqa: F401  (re-exported)
from srops.models.registry import import_modules  # noqa: F401  (re-exported)
from srops.models.runstate import save_atomic  # noqa: F401  (re-exported)
from srops.models.trainer import NonFiniteLossError, Trainer, run  # noqa: F401  (re-exported)


def _exit_on_sigterm(signum: int, frame) -> None:
    """SIGTERM outside the training loop (set-up, data loading): exit through ``finally`` blocks, which
    release the folder's lock (inside the loop a SIGTERM saves a checkpoint first)."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", help="experiment YAML, or the name of an installed preset (see --list)")
    ap.add_argument("--list", action="store_true", help="list the installed presets and exit")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry, e.g. --set train.iters=10 (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt")
    ap.add_argument("--archive", action="store_true",
                    help="when train.out_dir holds an earlier run, rename it to <out_dir>_archived_<time> and "
                         "start afresh (without this flag such a folder is refused)")
    args = ap.parse_args(argv)
    if args.list:
        for name, line in list_presets().items():
            print(f"{name:22s} {line}")
        return 0
    if args.config is None:
        ap.error("give -c/--config (a YAML file or a preset name; --list shows the presets)")
    if args.resume and args.archive:
        ap.error("--resume continues the run in train.out_dir, --archive moves it aside: give one of them")
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if _main_thread() else None
    try:
        cfg = load_config(args.config, args.set)
        trainer, res = run(cfg, resume=args.resume, archive=args.archive)
    except (OSError, ValueError, NonFiniteLossError) as exc:  # OSError: a full disk, a read-only folder
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if dist.is_initialized():
            dist.destroy_process_group()
    stopped_by = res.pop("stopped_by", None)
    if int(os.environ.get("RANK", "0")) == 0:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))
        if stopped_by:
            pending = " (the validation due there runs first)" if trainer.val_pending else ""
            print(f"stopped by {stopped_by} after iteration {trainer.iteration}; checkpoint "
                  f"{str(trainer.ckpt_path)!r} saved, continue with --resume{pending}", file=sys.stderr)
    if stopped_by:
        return 128 + int(signal.Signals[stopped_by])
    return 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
