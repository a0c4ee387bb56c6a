"""The project's main job on a fresh machine: train a small AMMS ×2 on T91, beat bicubic on Set5.

    python -m srops.models.demo [--budget SECONDS] [--out demo_out]

* Network (CPU profile): AMMS with 1 AMMS module, 1 attention module and 32 channels (MSFF 1/3/5
  multi-scale fusion, region non-local attention and second-order channel attention all present),
  143,925 parameters instead of the paper's 1.87M (4 modules × 4 AMs × 64 channels).
* Training: ``data/T91`` (bundled), LR by MATLAB bicubic ×1/2, random 24×24 LR patches with flips and
  rotations, batch 16, Adam lr 1e-3 halved twice, L1; stopped by wall clock (CPU default: 8 minutes of
  training, so that with data preparation and evaluation the job stays within 10 minutes on 2 cores)
  or by the iteration cap (1,500), whichever comes first; the lr is halved at 65 % and 85 % of the run.
* With CUDA the budget is the same, but the network is larger (2 modules × 2 AMs × 64 channels),
  patches are 48×48 and many more iterations fit.
* Evaluation: ``data/Set5`` ×2, Y channel, 2-pixel border shaved, against MATLAB bicubic.

Writes ``<out>/``: ``comparison.png`` (bicubic | srops SR | ground truth with zoomed crops),
``training_curve.png``, ``results_x2.csv``, the run folder (``run/``: checkpoint, CSV and TensorBoard
logs) and ``sr/`` (the SR images).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCALE = 2
TARGET_DB = 0.5

PROFILES = {
    "cpu": {"model": {"name": "amms", "scale": SCALE, "n_modules": 1, "n_am": 1, "n_feats": 32, "rgb_range": 1.0},
            "lr_patch": 24, "batch_size": 16, "lr": 1e-3, "iters": 1500, "budget": 480.0},
    "cuda": {"model": {"name": "amms", "scale": SCALE, "n_modules": 2, "n_am": 2, "n_feats": 64, "rgb_range": 1.0},
             "lr_patch": 48, "batch_size": 16, "lr": 5e-4, "iters": 30000, "budget": 480.0},
}


def make_config(profile: dict, out: Path, budget: float, data_root: Path, iters: int) -> dict:
    from srops.models.train import load_config

    cfg = load_config(None)
    cfg["model"] = dict(profile["model"])
    cfg["data"].update({"train": [str(data_root / "T91")], "val": None, "lr_patch": profile["lr_patch"],
                        "batch_size": profile["batch_size"], "iters_per_epoch": 100})
    cfg["optim"]["lr"] = profile["lr"]
    # halve the lr at 65 % and 85 % of the run, measured by iterations or by the time budget
    cfg["schedule"] = {"step_size": 10**9, "gamma": 1.0, "progress_milestones": [0.65, 0.85], "progress_gamma": 0.5}
    cfg["train"].update({"iters": iters, "out_dir": str(out / "run"), "time_budget": budget, "log_every": 10,
                         "ckpt_every": 10**9, "seed": 0})
    cfg["val"]["every"] = 10**9
    return cfg


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
    ap.add_argument("--budget", type=float, default=None, help="training wall-clock budget in seconds")
    ap.add_argument("--iters", type=int, default=None, help="iteration cap (default: the profile's)")
    ap.add_argument("--out", default="demo_out", help="output folder")
    ap.add_argument("--data", default=str(ROOT / "data"), help="folder holding T91/ and Set5/")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args(argv)

    import srops.models  # noqa: F401  (registers the networks)
    from srops.models.data import ValImages
    from srops.models.test import evaluate, format_table, load_model, save_png, super_resolve
    from srops.models.train import run

    t_start = time.perf_counter()
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    profile = PROFILES["cuda" if use_cuda else "cpu"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = profile["budget"] if args.budget is None else args.budget
    iters = profile["iters"] if args.iters is None else args.iters
    cfg = make_config(profile, out, budget, Path(args.data), iters)
    cfg["train"]["device"] = "cuda" if use_cuda else "cpu"
    m = profile["model"]
    print(f"srops demo: AMMS ×{SCALE} ({m['n_modules']} module(s), {m['n_am']} AM(s), {m['n_feats']} channels) "
          f"on T91, {'CUDA' if use_cuda else 'CPU'}, up to {iters} iterations or {budget:.0f} s of training")
    trainer, _ = run(cfg)
    t_train = time.perf_counter() - t_start
    n_params = sum(p.numel() for p in trainer.net.parameters())
    print(f"trained {trainer.iteration} iterations in {t_train:.0f} s ({n_params:,} parameters)")

    device = trainer.device
    set5 = ValImages(Path(args.data) / "Set5", SCALE)
    bic_model = load_model("bicubic", SCALE, None, device)
    res_b = evaluate(bic_model, set5, SCALE, device)
    res_s = evaluate(trainer.eval_model, set5, SCALE, device, save_dir=out / "sr")
    rows = [("bicubic", [(res_b["psnr"], res_b["ssim"])]), ("srops AMMS (demo)", [(res_s["psnr"], res_s["ssim"])])]
    table = format_table(rows, ["Set5"], SCALE)
    print(table)
    with open(out / f"results_x{SCALE}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "scale", "Set5_psnr", "Set5_ssim", "iterations", "train_seconds", "params"])
        w.writerow(["bicubic", SCALE, f"{res_b['psnr']:.4f}", f"{res_b['ssim']:.5f}", "", "", ""])
        w.writerow(["srops_amms_demo", SCALE, f"{res_s['psnr']:.4f}", f"{res_s['ssim']:.5f}", trainer.iteration,
                    f"{t_train:.0f}", n_params])

    name, lr, hr = next(x for x in set5 if x[0] == "butterfly") if "butterfly" in set5.pairs.names else next(iter(set5))
    with torch.no_grad():
        bic = bic_model(lr.to(device)).cpu()
        sr = super_resolve(trainer.eval_model, lr.to(device)).cpu()
    per_b = dict((n, (p, s)) for n, p, s in res_b["per_image"])
    per_s = dict((n, (p, s)) for n, p, s in res_s["per_image"])
    comparison_figure(lr, bic, sr, hr, {"bicubic": per_b[name], "srops AMMS": per_s[name]}, out / "comparison.png")
    save_png(bic[0], out / f"{name}_bicubic.png")
    curve_figure(Path(cfg["train"]["out_dir"]) / "log.csv", out / "training_curve.png", res_b["psnr"], res_s["psnr"])
    margin = res_s["psnr"] - res_b["psnr"]
    total = time.perf_counter() - t_start
    verdict = "OK" if margin >= TARGET_DB else f"BELOW the {TARGET_DB} dB target"
    print(f"margin over bicubic on Set5 ×{SCALE}: {margin:+.2f} dB ({verdict}); total wall time {total:.0f} s; "
          f"outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
