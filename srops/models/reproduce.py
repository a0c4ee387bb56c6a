"""Reproduction recipe for one GPU: train the paper-size AMMS ×2 against a wall-clock budget, then score it.

    python -m srops.models.reproduce [--budget 1800] [--data DIR ...] [--out runs/amms_x2_30min] [--set K=V ...]
    make reproduce

* Training: the ``amms_x2_30min`` preset (AMMS 4 modules × 4 AMs × 64 channels, 1.87M parameters, on the
  bundled T91; cosine lr over the budget), through ``srops.models.train``'s own code path. ``--set`` overrides
  any config entry, as for ``python -m srops.models.train``; ``--budget`` is ``train.time_budget``.
* A second run into the same ``--out`` keeps the first: its folder is renamed to
  ``<out>_archived_<YYYYmmdd-HHMMSS>`` (as ``python -m srops.models.train --archive`` does) before training.
* Evaluation: the final weights (``<out>/last.pt``, no selection on a test set) and bicubic on Set5, Set14 and
  BSD100 ×2 (Y channel, 2-pixel border shaved). Each set is looked up as ``<folder>/<name>`` in the ``--data``
  folders, then ``$SROPS_DATASETS``, ``../shared/datasets`` beside the checkout and the bundled ``data/``
  (Set5 only); a set found nowhere is reported as missing, not silently left out.
* Output: the table with the published bicubic, SRCNN and AMMS rows beside it on stdout, and
  ``reproduce_x2.md`` / ``reproduce_x2.csv`` in this machine's results folder (``$SROPS_RESULTS_DIR`` or
  ``bench/results/<device>/``), with the device, versions, iterations and seconds.

Target on one H100/H200: Set5 ≥ 37.0 dB within 30 minutes of training.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

PRESET = "amms_x2_30min"
SCALE = 2
SETS = ("Set5", "Set14", "BSD100")
TARGET_SET5 = 37.0


def dataset_folders(extra: list[str], defaults: bool = True) -> list[Path]:
    """Where the test sets are looked for, in order (``defaults=False``: only ``extra``)."""
    from srops.models.config import CHECKOUT_ROOT

    roots = [Path(d) for d in extra]
    if not defaults:
        return roots
    if os.environ.get("SROPS_DATASETS"):
        roots.append(Path(os.environ["SROPS_DATASETS"]))
    roots += [CHECKOUT_ROOT.parent / "shared" / "datasets", Path("data"), CHECKOUT_ROOT / "data"]
    return roots


def find_sets(roots: list[Path], names=SETS) -> dict[str, Path | None]:
    from srops.models.data import list_images

    found: dict[str, Path | None] = {}
    for name in names:
        found[name] = None
        for root in roots:
            folder = root / name
            if folder.is_dir() and list_images(folder):
                found[name] = folder
                break
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=None, help="train.time_budget in seconds (preset: 1800)")
    ap.add_argument("--data", action="append", default=[], help="folder holding Set5/, Set14/, BSD100/ (repeatable)")
    ap.add_argument("--out", default=None, help="train.out_dir (preset: runs/amms_x2_30min)")
    ap.add_argument("--only-data", action="store_true", help="look for the test sets in the --data folders only")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry")
    ap.add_argument("--results-dir", default=None, help="where reproduce_x2.md/.csv go (default: this machine's)")
    args = ap.parse_args(argv)

    import srops
    import srops.models  # noqa: F401  (registers the networks)
    from srops.info import device_name, results_dir, triton_version
    from srops.models.config import load_config
    from srops.models.data import ValImages
    from srops.models.evaluation import evaluate, format_table, load_model
    from srops.models.published import published_rows
    from srops.models.trainer import run

    overrides = list(args.set)
    if args.budget is not None:
        overrides.append(f"train.time_budget={args.budget}")
    if args.out is not None:
        overrides.append(f"train.out_dir={args.out}")
    try:
        cfg = load_config(PRESET, overrides)
        roots = dataset_folders(args.data, not args.only_data)
        where = ", ".join(str(r) for r in roots)
        sets = find_sets(roots)
        missing = [n for n, f in sets.items() if f is None]
        if sets["Set5"] is None:
            raise FileNotFoundError(f"srops.models.reproduce: no Set5 folder in {where}")
        images = {n: ValImages(f, SCALE) for n, f in sets.items() if f is not None}
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in missing:
        print(f"WARNING: test set {name} not found (looked for {name}/ in {where}); give --data", file=sys.stderr)
    m = cfg["model"]
    print(f"srops reproduce: AMMS ×{SCALE} ({m.get('n_modules')} × {m.get('n_am')} AMs × {m.get('n_feats')} "
          f"channels) on {', '.join(map(str, cfg['data']['train']))}, {cfg['train']['time_budget']:.0f} s budget, "
          f"device {device_name()}", flush=True)
    t0 = time.perf_counter()
    try:
        trainer, res = run(cfg, archive=True)  # an earlier run in the folder is kept as <out>_archived_<time>
    except (OSError, ValueError) as exc:  # a folder in use by another run, a full disk, a config mistake
        print(f"error: {exc}", file=sys.stderr)
        return 1
    train_s = time.perf_counter() - t0
    device = trainer.device
    names = list(images)
    rows = []
    for label, model in (("bicubic (ours)", load_model("bicubic", SCALE, None, device)),
                         (f"srops AMMS, {trainer.iteration} iterations", trainer.eval_model)):
        cells = []
        for n in names:
            r = evaluate(model, images[n], SCALE, device)
            cells.append((r["psnr"], r["ssim"]))
        rows.append((label, cells))
    table_rows: list[tuple[str, Sequence[tuple[float, float] | None]]] = [*rows, *published_rows(names)]
    table = format_table(table_rows, names, SCALE)
    set5 = rows[-1][1][0][0]
    verdict = "reached" if set5 >= TARGET_SET5 else "NOT reached"
    n_params = sum(p.numel() for p in trainer.net.parameters())
    env = (f"device {device_name()}; torch {torch.__version__}; triton {triton_version() or 'none'}; "
           f"srops {getattr(srops, '__version__', '?')}")
    summary = (f"{trainer.iteration} iterations in {res['seconds']:.0f} s of training ({train_s:.0f} s wall), "
               f"{n_params:,} parameters; Set5 target {TARGET_SET5} dB {verdict}")
    print(table)
    print(summary)
    out = Path(args.results_dir) if args.results_dir else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"reproduce_x{SCALE}.md").write_text(
        f"# AMMS ×{SCALE}, {PRESET} (python -m srops.models.reproduce)\n\n{env}\n\n{summary}\n\n"
        f"config overrides: {overrides or 'none'}\n\n{table}\n"
        + (f"\nmissing test sets: {', '.join(missing)}\n" if missing else ""))
    with open(out / f"reproduce_x{SCALE}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "scale", "iterations", "train_seconds"] + [f"{n}_{k}" for n in names
                                                                         for k in ("psnr", "ssim")])
        for label, cells in rows:
            its = trainer.iteration if label.startswith("srops") else ""
            secs = f"{res['seconds']:.0f}" if label.startswith("srops") else ""
            w.writerow([label, SCALE, its, secs] + [f"{v:.4f}" for c in cells for v in c])
    print(f"wrote {out / f'reproduce_x{SCALE}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
