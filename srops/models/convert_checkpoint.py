"""Rewrite a trusted checkpoint of an older srops so that it loads safely (``weights_only=True``).

    python -m srops.models.convert_checkpoint runs/amms_x2/last.pt runs/amms_x2/last.safe.pt --trust-this-file

srops reads checkpoints with ``torch.load(..., weights_only=True)`` only: tensors and plain data, never
code. Checkpoints written before that stored the numpy RNG state as ``np.random.get_state()``'s tuple with
an ndarray, which only an unsafe load (``weights_only=False``, which runs whatever code a file carries) can
read. This command does that unsafe load, and only when ``--trust-this-file`` says the file comes from a
source you trust; it converts the numpy RNG state to the plain form
(:func:`srops.models.runstate.numpy_rng_state`), checks that the result loads safely, and writes it to
``NEW`` through a temporary file in NEW's folder and ``os.replace``. An existing ``NEW`` is kept unless
``--overwrite`` is given. ``OLD`` is never changed (unless it is also ``NEW`` and ``--overwrite`` is given).
A file that already loads safely is copied in normalised form without the flag.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

WHO = "srops.models.convert_checkpoint"


def _convert(blob: Any, src: Path) -> dict:
    """``blob`` with its numpy RNG state (``rng.numpy``) in the plain form; ValueError if not a dict."""
    from srops.models.checkpoint import CheckpointError
    from srops.models.runstate import numpy_rng_state

    if not isinstance(blob, dict):
        raise CheckpointError(f"{WHO}: '{src}' holds a {type(blob).__name__}, not a dict of saved state; "
                              "it is not a checkpoint written by srops.models.train")
    rng = blob.get("rng")
    if isinstance(rng, dict) and "numpy" in rng:
        try:
            blob["rng"] = {**rng, "numpy": numpy_rng_state(rng["numpy"])}
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{WHO}: '{src}' has an unreadable numpy RNG state (rng.numpy): {exc}") from exc
    return blob


def _write_checked(blob: dict, dst: Path) -> None:
    """torch.save to a temporary file beside ``dst``, load it back with weights_only=True, os.replace."""
    from srops.models.checkpoint import CheckpointError, UnsafeCheckpointError, load_safely

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        torch.save(blob, tmp)
        try:
            load_safely(tmp, who=WHO)
        except UnsafeCheckpointError as exc:
            raise CheckpointError(f"{WHO}: '{dst}' not written: after conversion the checkpoint still holds "
                                  f"objects that cannot be loaded safely ({exc.__cause__ or exc})") from exc
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def convert(src: str | os.PathLike, dst: str | os.PathLike, trust: bool = False, overwrite: bool = False) -> Path:
    """Convert checkpoint ``src`` into ``dst`` (see the module docstring); returns ``dst``.

    Without ``trust`` a file that needs an unsafe load is refused (its code is never run). Raises
    FileNotFoundError / CheckpointError (a ValueError) naming the file.
    """
    from srops.models.checkpoint import CheckpointError, UnsafeCheckpointError, load_safely

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{WHO}: checkpoint file '{src}' does not exist")
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{WHO}: '{dst}' already exists; choose another name or pass --overwrite")
    try:
        blob = load_safely(src, who=WHO)
    except UnsafeCheckpointError as exc:
        if not trust:
            raise UnsafeCheckpointError(
                f"{WHO}: '{src}' cannot be loaded safely: reading it runs whatever code the file carries. "
                "Pass --trust-this-file only if it comes from a source you trust (e.g. your own training "
                "run with an older srops)") from exc
        try:  # the user vouched for this file: the one unsafe load srops ever does
            blob = torch.load(src, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001  (a foreign file may fail in any way)
            raise CheckpointError(f"{WHO}: cannot read '{src}' even without the safety check: "
                                  f"{type(exc2).__name__}: {exc2}") from exc2
    _write_checked(_convert(blob, src), dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {WHO}", description=__doc__.split("\n\n")[0])
    ap.add_argument("old", metavar="OLD", help="checkpoint to convert (not modified)")
    ap.add_argument("new", metavar="NEW", help="where to write the converted checkpoint")
    ap.add_argument("--trust-this-file", action="store_true",
                    help="load OLD with torch.load(weights_only=False), which runs any code it carries: only "
                         "for a file from a source you trust")
    ap.add_argument("--overwrite", action="store_true", help="replace NEW if it exists")
    args = ap.parse_args(argv)
    try:
        dst = convert(args.old, args.new, trust=args.trust_this_file, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {dst} (loads with torch.load(weights_only=True))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
