"""Evaluate SR networks on benchmark folders: the paper-style PSNR/SSIM table.

    python -m srops.models.test --model bicubic --model amms --checkpoint runs/amms_x2/best.pt \
        --scale 2 data/Set5 /path/Set14 [--self-ensemble] [--out results/]
    python -m srops.models.test --checkpoint runs/amms_x2/best.pt data/Set5   # model and scale from it

One row per model, one column per dataset, cells ``PSNR/SSIM`` on the BT.601 Y channel with ``scale``
pixels shaved from each border (MATLAB protocol), SR output quantised to 8 bits first. Prints the table
as markdown, writes it as CSV (``<out>/results_x<scale>.csv``) and saves every SR image as PNG under
``<out>/<model>/<dataset>/``. ``--checkpoint`` values are matched, in order, to the non-bicubic models;
a checkpoint's stored ``config`` (written by ``srops.models.train``) supplies the constructor arguments,
and, when ``--model`` / ``--scale`` are not given, the network and the scale. A learned model without a
checkpoint is refused (its weights would be random) unless ``--random-weights`` is given.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

# the scoring engine; its names are re-exported here, where they used to live
from srops.models.evaluation import (  # noqa: F401
    evaluate,
    format_table,
    load_model,
    quantize,
    save_png,
    score,
    super_resolve,
)


def resolve_models(models: list[str], checkpoints: list[str], scale: int | None, random_weights: bool
                   ) -> tuple[list[str], dict[str, str], int, list[str]]:
    """(models, checkpoint per learned model, scale, warnings) from the command line.

    Without ``--model`` the models are those the checkpoints hold; without ``--scale`` the scale is
    theirs. A learned model without a checkpoint is refused unless ``random_weights``.
    """
    from srops.models.checkpoint import load_checkpoint, model_spec

    specs = {}
    for ck in checkpoints:
        blob = load_checkpoint(ck, who="srops.models.test")
        if "config" in blob or not models:  # a bare state_dict needs --model to say which network it is
            specs[ck] = model_spec(blob, ck, "srops.models.test")
    if not models:
        if not checkpoints:
            raise ValueError("srops.models.test: give --model and/or --checkpoint")
        models = [specs[ck].name for ck in checkpoints]
    learned = [m for m in models if m != "bicubic"]
    if len(checkpoints) > len(learned):
        raise ValueError(f"{len(checkpoints)} checkpoints for {len(learned)} non-bicubic models")
    ckpts = dict(zip(learned, checkpoints, strict=False))  # the first models take the checkpoints
    warnings = []
    untrained = [m for m in learned if m not in ckpts]
    if untrained and not random_weights:
        raise ValueError(f"srops.models.test: model(s) {', '.join(map(repr, untrained))} have no --checkpoint: they "
                         "would be scored with random, untrained weights; pass their checkpoints (in --model "
                         "order), or --random-weights to score untrained networks on purpose")
    warnings += [f"model {m!r} is scored with RANDOM, UNTRAINED weights (--random-weights)" for m in untrained]
    for m, ck in ckpts.items():
        if ck in specs and specs[ck].iteration == 0:
            warnings.append(f"checkpoint '{ck}' of {m!r} was saved at iteration 0: its weights are untrained")
    if scale is None:
        scales = sorted({specs[ck].scale for ck in checkpoints if ck in specs})
        if len(scales) != 1:
            raise ValueError("srops.models.test: give --scale" + (
                f" (the checkpoints disagree: ×{', ×'.join(map(str, scales))})" if scales else
                " (no checkpoint says which scale)"))
        scale = scales[0]
    return models, ckpts, scale, warnings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.test", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[], help="registered name (repeatable); 'bicubic' "
                    "gives the baseline row; default: the networks the checkpoints hold")
    ap.add_argument("--checkpoint", action="append", default=[], help="weights for the non-bicubic models, in order")
    ap.add_argument("--scale", type=int, default=None, help="default: the checkpoints' scale")
    ap.add_argument("--random-weights", action="store_true",
                    help="score learned models that have no checkpoint (untrained weights) instead of refusing")
    ap.add_argument("datasets", nargs="+", help="folders of HR images")
    ap.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations")
    ap.add_argument("--out", default="results", help="output folder for the CSV and SR images")
    ap.add_argument("--no-save", action="store_true", help="do not save SR images")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the CSV and SR images of an earlier run in --out (refused otherwise)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)
    from srops.models.data import ValImages

    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    try:
        models, ckpts, args.scale, warnings = resolve_models(args.model, args.checkpoint, args.scale,
                                                             args.random_weights)
        for w in warnings:
            print(f"WARNING: {w}; its scores mean nothing", file=sys.stderr)
        sets = [(Path(d), ValImages(d, args.scale)) for d in args.datasets]
        labels = [name + ("+" if args.self_ensemble and name != "bicubic" else "") for name in models]
        csv_path = out / f"results_x{args.scale}.csv"
        check_out(out, planned_files(out, csv_path, labels, sets, not args.no_save), args.overwrite)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows, failed = [], 0
    for name, label in zip(models, labels, strict=True):
        try:
            model = load_model(name, args.scale, ckpts.get(name), device)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        cells: list[tuple[float, float] | None] = []
        for folder, images in sets:
            save_dir = None if args.no_save else out / label / folder.name
            try:
                res = evaluate(model, images, args.scale, device,
                               self_ensemble=args.self_ensemble and name != "bicubic",
                               save_dir=save_dir, progress=True, desc=f"{label} {folder.name}")
                cells.append((res["psnr"], res["ssim"]))
            except ValueError as exc:
                print(f"error: {label} on '{folder}': {exc}", file=sys.stderr)
                cells.append(None)
                failed += 1
            except OSError as exc:
                print(f"error: srops.models.test: cannot write the SR images of {label} on '{folder}' into "
                      f"'{save_dir}': {exc.strerror or exc}", file=sys.stderr)
                cells.append(None)
                failed += 1
        rows.append((label, cells))
    names = [folder.name for folder, _ in sets]
    print(format_table(rows, names, args.scale))
    try:
        write_csv(csv_path, rows, names, args.scale)
    except OSError as exc:
        print(f"error: srops.models.test: cannot write '{csv_path}': {exc.strerror or exc}; an earlier file "
              "there is left as it was", file=sys.stderr)
        return 1
    print(f"wrote {csv_path}")
    if failed:
        print(f"error: {failed} model/dataset cell(s) could not be scored (n/a above)", file=sys.stderr)
        return 1
    return 0


def planned_files(out: Path, csv_path: Path, labels: list[str], sets: list, save: bool) -> list[Path]:
    """Every file a run writes: the CSV and, unless --no-save, ``<out>/<label>/<dataset>/<image>.png``."""
    files = [csv_path]
    if save:
        files += [out / label / folder.name / f"{n}.png" for label in labels for folder, images in sets
                  for n in images.pairs.names[:len(images)]]
    return files


def check_out(out: Path, files: list[Path], overwrite: bool) -> None:
    """Before any work: ``out`` must be a folder that can be created and written, and, without
    ``overwrite``, hold none of ``files`` (a re-run into the same --out is refused, not merged)."""
    from srops.image.files import check_writable_folder

    if out.exists() and not out.is_dir():
        raise ValueError(f"srops.models.test: --out '{out}' is a file; expected a folder (created if missing)")
    existing = [f for f in files if f.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more file(s)" if len(existing) > 1 else ""
        raise ValueError(f"srops.models.test: --out '{out}' already holds results of an earlier run: "
                         f"'{existing[0]}'{more}; pass --overwrite to replace them, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable_folder(out)
    except OSError as exc:
        raise ValueError(f"srops.models.test: cannot write to --out '{out}': {exc.strerror or exc}") from exc


def write_csv(path: Path, rows: list, datasets: list[str], scale: int) -> None:
    """The results table as CSV (``n/a`` for unscored cells), written atomically."""
    import io

    from srops.image.files import write_atomic

    def write(fh) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        w = csv.writer(text)
        w.writerow(["model", "scale"] + [f"{d}_{k}" for d in datasets for k in ("psnr", "ssim")])
        for label, cells in rows:
            w.writerow([label, scale] + [v for c in cells for v in
                                         (("n/a", "n/a") if c is None else (f"{c[0]:.4f}", f"{c[1]:.4f}"))])
        text.flush()
        text.detach()

    write_atomic(path, write)


if __name__ == "__main__":
    sys.exit(main())
