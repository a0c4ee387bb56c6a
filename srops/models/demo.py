"""The project's main job on a fresh machine: train a small AMMS ×2 on T91, beat SRCNN on Set5.

    python -m srops.models.demo [--total SECONDS] [--budget SECONDS] [--out demo_out]

* Network (CPU profile): AMMS with 1 AMMS module, 1 attention module and 32 channels (MSFF 1/3/5
  multi-scale fusion, region non-local attention and second-order channel attention all present),
  143,925 parameters instead of the paper's 1.87M (4 modules × 4 AMs × 64 channels).
* Training: ``data/T91`` (bundled), LR by MATLAB bicubic ×1/2, random 24×24 LR patches with flips and
  rotations, batch 8, Adam lr 2e-3 with a 100-iteration warm-up and a cosine to 0 over the time budget, L1;
  bf16 autocast where the CPU has bf16 instructions (avx512_bf16 / AMX), channels-last, and the thread count
  re-chosen as the machine's load changes (``train.threads: auto``).
* Wall clock: the whole job, set-up included, is held to ``--total`` (600 s): ``make demo`` passes the time
  it started (``SROPS_DEMO_T0``), the training budget is what is left after the set-up less a reserve for the
  evaluation and the figures. ``--budget`` sets the training budget directly instead.
* With CUDA the network is larger (2 modules × 2 AMs × 64 channels), patches are 48×48, batch 16, lr 5e-4.
* Evaluation: ``data/Set5`` ×2, Y channel, 2-pixel border shaved, against MATLAB bicubic, printed beside the
  published bicubic, SRCNN (36.66 dB) and full-AMMS (37.92 dB) rows.

Writes ``<out>/``: ``comparison.png`` (bicubic | srops SR | ground truth with zoomed crops),
``training_curve.png``, ``results_x2.csv``, the run folder (``run/``: checkpoint, CSV and TensorBoard
logs) and ``sr/`` (the SR images). Run again, the demo rewrites its figures, tables and images, and keeps the
previous training run: ``run/`` is renamed to ``run_archived_<YYYYmmdd-HHMMSS>`` (``train --archive``).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from srops.models.config import CHECKOUT_ROOT

SCALE = 2
TOTAL_S = 600.0
#: seconds kept after training for the Set5 evaluation, the figures and the checkpoint (measured about 10 s
#: on an idle 2-core machine; twice that with the other core busy)
RESERVE_S = 30.0
MIN_BUDGET_S = 30.0
SRCNN_SET5 = 36.66

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"model": {"name": "amms", "scale": SCALE, "n_modules": 1, "n_am": 1, "n_feats": 32, "rgb_range": 1.0},
            "lr_patch": 24, "batch_size": 8, "lr": 2e-3, "warmup": 100, "iters": 10**6,
            "threads": "auto", "channels_last": True},
    "cuda": {"model": {"name": "amms", "scale": SCALE, "n_modules": 2, "n_am": 2, "n_feats": 64, "rgb_range": 1.0},
             "lr_patch": 48, "batch_size": 16, "lr": 5e-4, "warmup": 500, "iters": 10**6,
             "threads": None, "channels_last": False},
}


def cpu_has_bf16() -> bool:
    """bf16 autocast pays on CPU only with bf16 instructions (oneDNN emulates them otherwise, slower)."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        flags = Path("/proc/cpuinfo").read_text()
    except Exception:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def make_config(profile: dict, out: Path, budget: float, data_root: Path, iters: int, amp: str | None) -> dict:
    from srops.models.config import load_config

    cfg = load_config(None)
    cfg["model"] = dict(profile["model"])
    cfg["data"].update({"train": [str(data_root / "T91")], "val": None, "lr_patch": profile["lr_patch"],
                        "batch_size": profile["batch_size"], "iters_per_epoch": 100})
    cfg["optim"]["lr"] = profile["lr"]
    # a cosine from the peak lr to 0, over the iterations or the time budget, whichever ends first
    cfg["schedule"] = {"name": "cosine", "warmup_iters": min(profile["warmup"], iters), "min_lr": 0.0}
    cfg["train"].update({"iters": iters, "out_dir": str(out / "run"), "time_budget": budget, "log_every": 50,
                         "ckpt_every": 10**9, "seed": 0, "amp": amp, "threads": profile["threads"],
                         "channels_last": profile["channels_last"]})
    cfg["val"]["every"] = 10**9
    return cfg


def training_budget(total: float, t0: float | None, now: float) -> tuple[float, float]:
    """(training budget, seconds already spent since ``t0``) for a job held to ``total`` seconds."""
    spent = 0.0 if t0 is None else max(0.0, now - t0)
    return max(MIN_BUDGET_S, total - spent - RESERVE_S), spent


def comparison_figure(lr: torch.Tensor, bic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor,
                      scores: dict, path: Path) -> None:
    """bicubic | srops SR | ground truth (top) and a zoomed crop of each (bottom); tensors [1, 3, H, W]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = hr.shape[-2:]
    ch, cw = h // 4, w // 4
    top, left = h // 2 - ch // 2, w // 2 - cw // 2
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.5))
    for col, (title, img) in enumerate([("bicubic", bic), ("srops AMMS", sr), ("ground truth", hr)]):
        arr = img[0].clamp(0, 1).permute(1, 2, 0).numpy()
        label = title if title not in scores else f"{title}: {scores[title][0]:.2f} dB / {scores[title][1]:.4f}"
        axes[0, col].imshow(arr)
        axes[0, col].add_patch(Rectangle((left, top), cw, ch, fill=False, edgecolor="red", linewidth=1.5))
        axes[0, col].set_title(label)
        axes[1, col].imshow(arr[top:top + ch, left:left + cw], interpolation="nearest")
        axes[1, col].set_title(f"{title} (zoom)")
        for ax in axes[:, col]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve_figure(log_csv: Path, path: Path, bicubic_psnr: float, final_psnr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from srops.models.logs import read_log

    points = read_log(log_csv).get("train/loss", [])
    its, losses = [i for i, _ in points], [v for _, v in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(its, losses, lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("L1 loss (RGB, [0, 1])")
    ax.set_yscale("log")
    ax.set_title(f"AMMS ×2 on T91: Set5 {final_psnr:.2f} dB (bicubic {bicubic_psnr:.2f} dB)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--total", type=float, default=TOTAL_S,
                    help="wall-clock seconds for the whole job, set-up included (from $SROPS_DEMO_T0 if set)")
    ap.add_argument("--budget", type=float, default=None, help="training budget in seconds (instead of --total)")
    ap.add_argument("--iters", type=int, default=None, help="iteration cap (default: none, the budget decides)")
    ap.add_argument("--out", default="demo_out", help="output folder")
    ap.add_argument("--data", default=str(CHECKOUT_ROOT / "data"), help="folder holding T91/ and Set5/")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)

    import srops.models  # noqa: F401  (registers the networks)
    from srops.models.data import ValImages
    from srops.models.evaluation import evaluate, format_table, load_model, save_png, super_resolve
    from srops.models.published import published_rows
    from srops.models.trainer import run

    t_start = time.perf_counter()
    t0 = os.environ.get("SROPS_DEMO_T0")
    try:
        t0_wall = float(t0) if t0 else None
    except ValueError:
        print(f"error: SROPS_DEMO_T0 must be a time in seconds since the epoch, got {t0!r}", file=sys.stderr)
        return 1
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    profile = PROFILES["cuda" if use_cuda else "cpu"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget, spent = training_budget(args.total, t0_wall, time.time())
    if args.budget is not None:
        budget = args.budget
    iters = profile["iters"] if args.iters is None else args.iters
    amp = "bf16" if not use_cuda and cpu_has_bf16() else None
    cfg = make_config(profile, out, budget, Path(args.data), iters, amp)
    cfg["train"]["device"] = "cuda" if use_cuda else "cpu"
    m = profile["model"]
    if t0_wall is not None:
        print(f"srops demo: set-up took {spent:.0f} s; {budget:.0f} s of training left in the {args.total:.0f} s job")
    print(f"srops demo: AMMS ×{SCALE} ({m['n_modules']} module(s), {m['n_am']} AM(s), {m['n_feats']} channels) "
          f"on T91, {'CUDA' if use_cuda else 'CPU'}{', bf16 autocast' if amp else ''}, {budget:.0f} s of training"
          + (f" or {iters} iterations" if args.iters is not None else ""), flush=True)
    try:
        trainer, res = run(cfg, archive=True)  # an earlier demo's run/ is kept as run_archived_<time>
    except (OSError, ValueError) as exc:  # another demo training into the same folder, a full disk
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n_params = sum(p.numel() for p in trainer.net.parameters())
    tuner = trainer.thread_tuner
    threads = f", {tuner.current} thread(s) at the end" if tuner is not None else ""
    print(f"trained {trainer.iteration} iterations in {res['seconds']:.0f} s ({n_params:,} parameters{threads})")

    device = trainer.device
    set5 = ValImages(Path(args.data) / "Set5", SCALE)
    bic_model = load_model("bicubic", SCALE, None, device)
    res_b = evaluate(bic_model, set5, SCALE, device)
    res_s = evaluate(trainer.eval_model, set5, SCALE, device, save_dir=out / "sr")
    rows = [("bicubic (ours)", [(res_b["psnr"], res_b["ssim"])]),
            (f"srops AMMS (demo, {trainer.iteration} iterations)", [(res_s["psnr"], res_s["ssim"])])]
    table_rows: list[tuple[str, Sequence[tuple[float, float] | None]]] = [*rows, *published_rows(["Set5"])]
    table = format_table(table_rows, ["Set5"], SCALE)
    print(table)
    with open(out / f"results_x{SCALE}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "scale", "Set5_psnr", "Set5_ssim", "iterations", "train_seconds", "params"])
        w.writerow(["bicubic", SCALE, f"{res_b['psnr']:.4f}", f"{res_b['ssim']:.5f}", "", "", ""])
        w.writerow(["srops_amms_demo", SCALE, f"{res_s['psnr']:.4f}", f"{res_s['ssim']:.5f}", trainer.iteration,
                    f"{res['seconds']:.0f}", n_params])

    name, lr, hr = next(x for x in set5 if x[0] == "butterfly") if "butterfly" in set5.pairs.names else next(iter(set5))
    with torch.no_grad():
        bic = bic_model(lr.to(device)).cpu()
        sr = super_resolve(trainer.eval_model, lr.to(device)).cpu()
    per_b = dict((n, (p, s)) for n, p, s in res_b["per_image"])
    per_s = dict((n, (p, s)) for n, p, s in res_s["per_image"])
    comparison_figure(lr, bic, sr, hr, {"bicubic": per_b[name], "srops AMMS": per_s[name]}, out / "comparison.png")
    save_png(bic[0], out / f"{name}_bicubic.png")
    curve_figure(Path(cfg["train"]["out_dir"]) / "log.csv", out / "training_curve.png", res_b["psnr"], res_s["psnr"])
    total = time.perf_counter() - t_start + spent
    verdict = (f"above SRCNN's published {SRCNN_SET5} dB" if res_s["psnr"] >= SRCNN_SET5
               else f"BELOW SRCNN's published {SRCNN_SET5} dB")
    print(f"Set5 ×{SCALE}: {res_s['psnr']:.2f} dB, {res_s['psnr'] - res_b['psnr']:+.2f} dB over bicubic, {verdict}; "
          f"total wall time {total:.0f} s{' (set-up included)' if t0_wall is not None else ''}; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
