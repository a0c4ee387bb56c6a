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
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from srops.models import build


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, halves up (MATLAB uint8 conversion, as saving PNG would)."""
    return torch.floor(x.clamp(0, 1) * 255 + 0.5) / 255


def _final(out):
    return out[-1] if isinstance(out, (list, tuple)) else out


# the 8 dihedral transforms on [B, C, H, W] and their inverses
_TRANSFORMS: list[tuple[Callable, Callable]] = []
for _k in range(4):
    for _f in (False, True):
        def _fwd(x, k=_k, f=_f):
            return torch.rot90(x.flip(-1) if f else x, k, (-2, -1))

        def _inv(x, k=_k, f=_f):
            y = torch.rot90(x, -k, (-2, -1))
            return y.flip(-1) if f else y

        _TRANSFORMS.append((_fwd, _inv))


@torch.no_grad()
def super_resolve(model: nn.Module, lr: torch.Tensor, self_ensemble: bool = False) -> torch.Tensor:
    """SR of LR ``[B, 3, h, w]`` in [0, 1] → ``[B, 3, sh, sw]`` (unquantised); ×8 geometric ensemble optional."""
    model.eval()
    if not self_ensemble:
        return _final(model(lr)).float()
    acc = None
    for fwd, inv in _TRANSFORMS:
        y = inv(_final(model(fwd(lr))).float())
        acc = y if acc is None else acc + y
    return acc / len(_TRANSFORMS)


def score(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> tuple[float, float]:
    """(PSNR, SSIM) of quantised ``sr`` vs ``hr`` (``[1, 3, H, W]`` in [0, 1]) on Y, shaving ``crop_border``."""
    from srops.image import psnr, ssim

    sr = quantize(sr)
    return (float(psnr(sr, hr, crop_border, test_y_channel=True)[0]),
            float(ssim(sr, hr, crop_border, test_y_channel=True)[0]))


def evaluate(model: nn.Module, images: Iterable, scale: int, device: torch.device | str = "cpu",
             crop_border: int | None = None, self_ensemble: bool = False,
             save_dir: Path | None = None, progress: bool = False, desc: str = "") -> dict:
    """Mean PSNR/SSIM of ``model`` over ``(name, lr, hr)`` items; optionally saves SR PNGs to ``save_dir``."""
    from tqdm import tqdm

    crop = scale if crop_border is None else crop_border
    device = torch.device(device)
    was_training = model.training
    per: list[tuple[str, float, float]] = []
    try:
        for name, lr, hr in tqdm(images, desc=desc, disable=not progress, file=sys.stderr, leave=False):
            try:
                sr = super_resolve(model, lr.to(device), self_ensemble).cpu()
            except ValueError as exc:  # e.g. an image smaller than the network accepts
                raise ValueError(_refusal(model, name, lr.to(device), exc)) from exc
            if sr.shape != hr.shape:
                raise ValueError(f"srops.models.test: model output {tuple(sr.shape)} does not match HR "
                                 f"{tuple(hr.shape)} for image {name!r}")
            p, s = score(sr, hr, crop)
            per.append((name, p, s))
            if save_dir is not None:
                save_png(sr[0], Path(save_dir) / f"{name}.png")
    finally:
        model.train(was_training)
    return {"psnr": float(np.mean([p for _, p, _ in per])), "ssim": float(np.mean([s for _, _, s in per])),
            "per_image": per}


def _refusal(model: nn.Module, name: str, lr: torch.Tensor, exc: ValueError) -> str:
    """Why the network refused image ``name``: below its smallest accepted size (probed), or its own error."""
    from srops.models.inference import smallest_input

    h, w = lr.shape[-2:]
    n = smallest_input(model, lr.device, lr.dtype)
    if n is not None and min(h, w) < n:
        return (f"srops.models.test: image {name!r} is {w}x{h} pixels at LR; the network accepts at least "
                f"{n}x{n} ({exc})")
    return f"srops.models.test: the network cannot super-resolve image {name!r} ({w}x{h} LR pixels): {exc}"


def save_png(img: torch.Tensor, path: Path) -> None:
    """Save ``[3, H, W]`` float in [0, 1] as an 8-bit PNG, atomically (``srops.image.write_image``)."""
    from srops.image import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = torch.floor(img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(arr, path)


def load_model(name: str, scale: int, checkpoint: str | None, device: torch.device) -> nn.Module:
    """Build ``name`` at ``scale``; with a checkpoint, use its stored model config and weights.

    FileNotFoundError / ValueError (``srops.models.checkpoint.CheckpointError``) naming the file when the
    checkpoint is missing, unreadable, of another network or scale, or of another width than its config.
    """
    from srops.models.checkpoint import (CheckpointError, build_network, load_checkpoint, load_weights, model_spec,
                                         state_dict_of)
    from srops.models.objectives import NetIO, model_rgb_range

    who = "srops.models.test"
    kwargs: dict = {}
    state = None
    model = None
    if checkpoint is not None:
        blob = load_checkpoint(checkpoint, who=who)
        state = state_dict_of(blob, checkpoint, who)
        if "config" in blob:
            spec = model_spec(blob, checkpoint, who)
            if spec.name != name:
                raise CheckpointError(f"{who}: checkpoint '{checkpoint}' holds a {spec.name!r} network, not {name!r}")
            if spec.scale != scale:
                raise CheckpointError(f"{who}: checkpoint '{checkpoint}' is for ×{spec.scale}, not ×{scale}")
            kwargs = spec.kwargs
            model = build_network(spec, checkpoint, who)  # the stored arguments: errors name the file
    if model is None:
        model = build(name, scale=scale)
    if state is not None:
        load_weights(model, state, checkpoint, f"network {name!r} ×{scale}", who)
    return NetIO(model, model_rgb_range(name, kwargs)).to(device).eval()


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
    ckpts = dict(zip(learned, checkpoints))
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


def format_table(rows: list[tuple[str, list[tuple[float, float] | None]]], datasets: list[str], scale: int) -> str:
    """A markdown PSNR/SSIM table; a ``None`` cell prints as ``n/a``."""
    head = f"| model (×{scale}) | " + " | ".join(datasets) + " |"
    sep = "|---|" + "---|" * len(datasets)
    body = [f"| {m} | " + " | ".join("n/a" if c is None else f"{c[0]:.2f}/{c[1]:.4f}" for c in cells) + " |"
            for m, cells in rows]
    return "\n".join([head, sep, *body])


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
    for name, label in zip(models, labels):
        try:
            model = load_model(name, args.scale, ckpts.get(name), device)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        cells: list[tuple[float, float] | None] = []
        for folder, images in sets:
            save_dir = None if args.no_save else out / label / folder.name
            try:
                res = evaluate(model, images, args.scale, device, self_ensemble=args.self_ensemble and name != "bicubic",
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
