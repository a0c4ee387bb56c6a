"""Upscale your own images with a trained checkpoint.

    srops-upscale photo.jpg holiday/ "scans/*.png" -o out/ --checkpoint runs/amms_x2/best.pt
    python -m srops.models.upscale ... [--tile 256 --tile-overlap 32] [--device cuda --half] [--self-ensemble]

Inputs are files, folders (their PNG/BMP/JPEG/TIFF/WebP images, not recursive) or glob patterns. The
network, its scale and its constructor arguments are read from the checkpoint (``srops.models.train``
writes them into ``last.pt`` and ``best.pt``). Every output is a PNG named after its input
(``photo.jpg`` → ``out/photo.png``); inputs that would share a name keep their extension in it
(``photo.jpg`` → ``photo_jpg.png``, ``photo.png`` → ``photo_png.png``), and a clash that remains is an
error before anything runs. Greyscale stays greyscale (the network sees it as RGB; the output is its
luma), an alpha channel is upscaled by bicubic interpolation and kept, 16-bit images are written at 16
bits; EXIF orientation is applied and the ICC profile carried over. By default each image goes through
the network whole, so image-wide attention sees the whole image; ``--tile`` bounds memory (see
:mod:`srops.models.inference`), and an allocation failure retries with tiles.

Files are safe: an output that is an input is refused, an existing output needs ``--overwrite`` (or is
kept with ``--skip-existing``), every file is written to a temporary name and moved into place. One bad
image is one ``error:`` line and the batch goes on; a summary ends the run, status 1 if anything failed.
"""
from __future__ import annotations

import argparse
import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srops.image import IMAGE_EXTENSIONS
from srops.models.inference import is_out_of_memory, run_network  # noqa: F401 (part of this module's API)

READ_EXTENSIONS = IMAGE_EXTENSIONS  # the earlier name
WHO = "srops.models.upscale"


@dataclass
class Job:
    """One input file and the output file it becomes."""

    src: Path
    dst: Path


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns → image files in order, duplicates dropped."""
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"{WHO}: folder '{item}' holds no image ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                raise ValueError(f"{WHO}: pattern '{item}' matches no file")
            files += found
        else:
            raise FileNotFoundError(f"{WHO}: input '{item}' is neither a file, a folder nor a matching pattern")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def plan_outputs(files: list[Path], out_dir: Path) -> list[Job]:
    """Output PNG per input: ``<stem>.png``; stems shared by several inputs become ``<stem>_<ext>.png``.

    ValueError naming the inputs if two of them would still write the same file.
    """
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    jobs = []
    for f in files:
        shared = len(by_stem[f.stem]) > 1
        name = f"{f.stem}_{f.suffix.lstrip('.').lower()}.png" if shared else f"{f.stem}.png"
        jobs.append(Job(f, out_dir / name))
    owners: dict[str, Path] = {}
    for job in jobs:
        key = job.dst.name
        if key in owners:
            raise ValueError(f"{WHO}: inputs '{owners[key]}' and '{job.src}' would both be written to "
                             f"'{job.dst}'; upscale them into different output folders")
        owners[key] = job.src
    return jobs


def to_network_input(arr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``H x W x C`` uint8/uint16 → (RGB ``[1, 3, H, W]`` in [0, 1], alpha ``[1, 1, H, W]`` or None, peak)."""
    peak = 65535.0 if arr.dtype == np.uint16 else 255.0
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32) / peak)[None]
    c = x.shape[1]
    rgb = x[:, :3] if c >= 3 else x[:, :1].expand(-1, 3, -1, -1).contiguous()
    alpha = x[:, c - 1:c] if c in (2, 4) else None
    return rgb, alpha, peak


def from_network_output(sr: torch.Tensor, alpha: torch.Tensor | None, channels: int, scale: int,
                        peak: float) -> np.ndarray:
    """SR ``[1, 3, sH, sW]`` (+ input alpha) → ``sH x sW x channels`` array in the input's bit depth.

    Greyscale outputs are the ITU-R BT.601 luma of the RGB result (as Pillow's ``convert("L")``);
    alpha is upscaled by bicubic interpolation.
    """
    sr = sr.clamp(0, 1)  # a copy: the caller's tensor is left alone
    if channels in (1, 2):
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=sr.dtype).view(1, 3, 1, 1)
        sr = (sr * weights).sum(1, keepdim=True)
    if alpha is not None:
        a = F.interpolate(alpha, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
        sr = torch.cat([sr, a], dim=1)
    dtype = np.uint16 if peak > 255 else np.uint8
    q = sr[0].double().mul_(peak).add_(0.5).floor_()  # in place: one float64 copy at a time
    del sr
    return q.permute(1, 2, 0).numpy().astype(dtype)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``; ValueError if CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"{WHO}: --device must be auto, cpu, cuda or cuda:N, got {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{WHO}: --device {name} asked for CUDA, but no CUDA device is visible")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{WHO}: --device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return dev


def resolve_dtype(half: bool, bf16: bool, device: torch.device) -> torch.dtype:
    if half and bf16:
        raise ValueError(f"{WHO}: give --half or --bf16, not both")
    if half and device.type != "cuda":
        raise ValueError(f"{WHO}: --half (float16) needs a CUDA device (--device cuda); on the CPU, float16 "
                         "convolutions are slow or unsupported: run in float32 (the default) or --bf16")
    return torch.float16 if half else torch.bfloat16 if bf16 else torch.float32


def _progress(total: int):
    """A tqdm bar over forward passes, shown only when stderr is a terminal and the run takes > 1 s."""
    from tqdm import tqdm

    return tqdm(total=total, desc="upscale", unit="pass", file=sys.stderr, disable=not sys.stderr.isatty(),
                delay=1.0, leave=False)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="srops-upscale", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Model, scale and constructor arguments come from the checkpoint.")
    ap.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    ap.add_argument("-o", "--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--checkpoint", required=True, help="last.pt or best.pt written by srops.models.train")
    existing = ap.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="replace output files that already exist (never an input file)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep output files that already exist and upscale only the other images")
    ap.add_argument("--tile", type=int, default=None, metavar="T",
                    help="tiled inference with T×T LR tiles (default: the whole image at once)")
    ap.add_argument("--tile-overlap", type=int, default=32, metavar="O",
                    help="LR pixels shared by neighbouring tiles, < T/2 (default 32); the outer O/4 of each "
                         "tile edge is discarded and the next O/2 cross-faded")
    ap.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    ap.add_argument("--half", action="store_true", help="float16 inference (CUDA only)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 inference")
    ap.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8× slower)")
    ap.add_argument("--allow-large-images", action="store_true",
                    help="read images above Pillow's decompression-bomb limit (~89 megapixels)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    return ap


def load_network(path: str, device: torch.device, dtype: torch.dtype):
    """(NetIO-wrapped network on ``device`` in ``dtype``, ModelSpec) from a checkpoint; warns when untrained."""
    from srops.models.checkpoint import build_from_checkpoint
    from srops.models.objectives import NetIO, model_rgb_range

    net, spec = build_from_checkpoint(path, who=WHO)
    if spec.iteration == 0:
        print(f"warning: checkpoint '{path}' was saved at iteration 0: its weights are untrained, "
              "the outputs will not be super-resolved images", file=sys.stderr)
    model = NetIO(net, model_rgb_range(spec.name, spec.kwargs)).to(device=device, dtype=dtype).eval()
    if device.type == "cpu" and dtype == torch.float32:
        model = model.to(memory_format=torch.channels_last)
    return model, spec


def _too_small(model, spec, src: Path, h: int, w: int, device, dtype, exc: ValueError) -> ValueError:
    """The network refused the image: say, in pixels, how small is too small (or pass its error on)."""
    from srops.models.inference import smallest_input

    n = smallest_input(model, device, dtype)
    if n is not None and min(h, w) < n:
        return ValueError(f"{WHO}: '{src}' is {w}x{h} pixels; {spec.name} ×{spec.scale} accepts images of at least "
                          f"{n}x{n} pixels ({exc})")
    return ValueError(f"{WHO}: {spec.name} ×{spec.scale} cannot upscale '{src}' ({w}x{h} pixels): {exc}")


def upscale_file(model, spec, job: Job, args, device: torch.device, dtype: torch.dtype, bar) -> tuple:
    """Read, upscale and write one image; ((h, w), (sh, sw)). ValueError for unreadable or refused images
    and non-finite outputs (nothing written), OSError for a failed write (an existing file stays intact)."""
    import warnings

    from srops.image import read_image_and_profile, write_image
    from srops.models.inference import count_passes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr, profile = read_image_and_profile(job.src, allow_large=args.allow_large_images, who=WHO)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    rgb, alpha, peak = to_network_input(arr)
    h, w = rgb.shape[-2:]
    bar.total = (bar.total or 0) + count_passes(h, w, args.tile, args.tile_overlap, args.self_ensemble)
    if device.type == "cpu" and dtype == torch.float32:
        rgb = rgb.contiguous(memory_format=torch.channels_last)
    try:
        sr = run_network(model, rgb, spec.scale, args.tile, args.tile_overlap, args.self_ensemble, device, dtype,
                         step=lambda: bar.update(1), note=lambda m: print(f"note: '{job.src}': {m}", file=sys.stderr))
    except ValueError as exc:
        raise _too_small(model, spec, job.src, h, w, device, dtype, exc) from exc
    finite = torch.isfinite(sr)
    if not bool(finite.all()):
        hint = "; float16 may have overflowed: try --bf16 or float32" if dtype == torch.float16 else ""
        raise ValueError(f"{WHO}: the network's output for '{job.src}' holds NaN or Inf in "
                         f"{int((~finite).sum())} of {sr.numel()} values: checkpoint '{args.checkpoint}' may hold "
                         f"NaN/Inf weights{hint}; '{job.dst}' was not written")
    out = from_network_output(sr, alpha, arr.shape[2], spec.scale, peak)
    write_image(out, job.dst, icc_profile=profile)
    return (h, w), out.shape[:2]


class Refused(ValueError):
    """A command line that would destroy files or cannot write its outputs: refused before any work."""


def check_outputs(jobs: list[Job], out: Path, overwrite: bool, skip_existing: bool) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs skipped because their output exists) after the safety checks, before any work.

    Refused: ``out`` being a file; an output that is one of the inputs (even with --overwrite); existing
    outputs without --overwrite or --skip-existing.
    """
    if out.exists() and not out.is_dir():
        raise Refused(f"{WHO}: -o/--out '{out}' is a file; expected a folder (created if missing)")
    inputs = {j.src.resolve(): j.src for j in jobs}
    onto = [(j, inputs[j.dst.resolve()]) for j in jobs if j.dst.resolve() in inputs]
    if onto:
        job, victim = onto[0]
        more = f" (and {len(onto) - 1} more)" if len(onto) > 1 else ""
        raise Refused(f"{WHO}: the output of '{job.src}' would be written onto the input '{victim}'{more}; "
                      "inputs are never overwritten: choose another output folder (-o)")
    existing = [j for j in jobs if j.dst.exists() or j.dst.is_symlink()]
    if existing and not (overwrite or skip_existing):
        which = (f"output '{existing[0].dst}' already exists" if len(existing) == 1 else
                 f"{len(existing)} outputs already exist ('{existing[0].dst}', ...)")
        raise Refused(f"{WHO}: {which}; pass --overwrite to replace them, or --skip-existing to keep them and "
                      "upscale the other images")
    if skip_existing:
        return [j for j in jobs if j not in existing], existing
    return jobs, []


def prepare_folder(out: Path) -> None:
    """Create ``out`` and check that a file can be written in it; Refused naming the folder otherwise."""
    from srops.image.files import check_writable_folder

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refused(f"{WHO}: cannot create output folder '{out}': {exc.strerror or exc}") from exc
    try:
        check_writable_folder(out)
    except OSError as exc:
        raise Refused(f"{WHO}: cannot write to output folder '{out}': {exc.strerror or exc}") from exc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from srops.models.checkpoint import CheckpointError
    from srops.models.inference import check_tiling

    out = Path(args.out)
    try:
        check_tiling(args.tile, args.tile_overlap)
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"{WHO}: --threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.half, args.bf16, device)
        planned = plan_outputs(expand_inputs(args.inputs), out)
        jobs, skipped = check_outputs(planned, out, args.overwrite, args.skip_existing)
        model, spec = load_network(args.checkpoint, device, dtype)
        prepare_folder(out)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for job in skipped:
        print(f"skip: '{job.dst}' exists (--skip-existing), '{job.src}' not upscaled", file=sys.stderr)
    print(f"{spec.name} ×{spec.scale} from '{args.checkpoint}' on {device} ({str(dtype).replace('torch.', '')}), "
          f"{'tiles of ' + str(args.tile) if args.tile else 'whole images'}, {len(jobs)} image(s)")
    failed = 0
    with _progress(0) as bar:
        for job in jobs:
            t0 = time.perf_counter()
            try:
                (h, w), (sh, sw) = upscale_file(model, spec, job, args, device, dtype, bar)
            except (FileNotFoundError, ValueError) as exc:
                message = str(exc)
            except OSError as exc:  # reading errors are ValueErrors: this is the write
                message = f"{WHO}: cannot write '{job.dst}' (from '{job.src}'): {exc.strerror or exc}"
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                message = (f"{WHO}: out of memory on '{job.src}' ({device}) even in tiles; retry with a smaller "
                           "--tile (e.g. 128) or --device cpu")
            else:
                bar.clear()
                print(f"{job.src} -> {job.dst} ({w}x{h} -> {sw}x{sh}, {time.perf_counter() - t0:.1f} s)", flush=True)
                continue
            bar.clear()
            print(f"error: {message}", file=sys.stderr, flush=True)
            failed += 1
    done = len(jobs) - failed
    summary = f"upscaled {done} of {len(planned)} image(s) into '{out}'"
    summary += f"; {len(skipped)} skipped (output exists)" if skipped else ""
    if failed:
        print(f"error: {summary}; {failed} failed (see above)", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
