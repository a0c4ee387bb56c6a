"""Turn pytest-benchmark JSON into a markdown report and PNG charts.

    pytest bench/ --benchmark-only --benchmark-json=bench/results/<device>/bench.json
    python bench/report.py [bench.json ...] [--out DIR]

Without arguments it reads ``bench/results/<this device>/bench.json`` (the folder
``python -m srops.info --results-dir`` prints) and writes ``report.md`` and the
charts beside it: per op and per network, median time, speed-up over
``reference`` and over ``torch.compile(reference)``, peak extra memory; charts of
the speed-up by shape and of time and memory against N for the scaling study.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPILED = "compile(reference)"
ENV_KEYS = ("device", "torch", "torch CUDA", "triton", "CUDA compiled against", "compiled with", "CPU threads", "srops",
            "allocator")


def load_skipped(paths: list[Path]) -> list[dict]:
    """Cases the run skipped for a reason worth reporting (memory, time), as recorded by bench/conftest.py."""
    keep = ("memory", "too slow", "would store", "would materialise", "Î would")
    return [s for p in paths for s in json.loads(p.read_text()).get("skipped", [])
            if any(k in s["reason"] for k in keep)]


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        data = json.loads(path.read_text())
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info", {})
            rows.append({
                "group": bench.get("group") or bench["name"],
                "backend": info.get("backend", bench["name"]),
                "shape": info.get("shape", ""),
                "mode": info.get("mode", ""),
                "median_ms": bench["stats"]["median"] * 1e3,
                "min_ms": bench["stats"]["min"] * 1e3,
                "rounds": bench["stats"]["rounds"],
                "first_ms": _first_ms(bench["stats"].get("data")),
                "peak_mb": info.get("peak_mb"),
                "info": info,
                "datetime": data.get("datetime", ""),
            })
    return rows


def rows_from_session(benchmarks: list) -> list[dict]:
    """The rows of ``load`` from pytest-benchmark's in-memory results (``config._benchmarksession.benchmarks``)."""
    rows = []
    for bench in benchmarks:
        if not bench:  # no stats: the case failed or was skipped after the fixture was made
            continue
        info = bench.extra_info
        rows.append({"group": bench.group or bench.name, "backend": info.get("backend", bench.name),
                     "shape": info.get("shape", ""), "mode": info.get("mode", ""),
                     "median_ms": bench.stats.median * 1e3, "min_ms": bench.stats.min * 1e3,
                     "rounds": bench.stats.rounds, "peak_mb": info.get("peak_mb"), "info": info, "datetime": "",
                     "first_ms": _first_ms(getattr(getattr(bench.stats, "stats", bench.stats), "data", None))})
    return rows


def _first_ms(data: list | None) -> float | None:
    """The first timed round in ms, when the round times were kept."""
    return data[0] * 1e3 if data else None


MIN_ROUNDS = 3
MAX_FIRST_OVER_MEDIAN = 1.5


def warmed_up(row: dict) -> bool:
    """Whether a case's median is a steady-state time: at least ``MIN_ROUNDS`` rounds, and a first round (when
    known) at most ``MAX_FIRST_OVER_MEDIAN`` times the median (a case still warming up is slower at first)."""
    if row.get("rounds", MIN_ROUNDS) < MIN_ROUNDS:
        return False
    first = row.get("first_ms")
    return first is None or first <= MAX_FIRST_OVER_MEDIAN * row["median_ms"]


def peer_of(backends: set[str]) -> str | None:
    """The peer a user would otherwise pick: torch's SDPA where the op is attention, else torch.compile."""
    for peer in ("sdpa", COMPILED):
        if peer in backends:
            return peer
    return None


def summary_lines(rows: list[dict]) -> list[str]:
    """A table under 80 columns: per case (op, shape, pass) a line per backend, fastest first, with
    median ms, speed-up over ``reference`` and over the peer (``peer_of``), and peak extra MB."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    if not groups:
        return []
    lines = [f"  {'backend':<20}{'median ms':>11}{'x ref':>8}{'x peer':>8}{'peak MB':>10}"]
    cold = False

    def ratio(base: dict | None, r: dict) -> float | None:  # only between two steady-state times
        return base["median_ms"] / r["median_ms"] if base and warmed_up(base) and warmed_up(r) else None

    for group in sorted(groups):
        by = {r["backend"]: r for r in groups[group]}
        peer = peer_of(set(by))
        lines.append(f"{group}" + (f"  (peer: {peer})" if peer else ""))
        for r in sorted(groups[group], key=lambda r: r["median_ms"]):
            vs_ref, vs_peer = ratio(by.get("reference"), r), ratio(by.get(peer), r)
            mark = "" if warmed_up(r) else " *"
            cold = cold or bool(mark)
            lines.append(f"  {r['backend']:<20}{r['median_ms']:>11.3f}{_fmt(vs_ref):>8}{_fmt(vs_peer):>8}"
                         f"{_fmt(r['peak_mb'], 1):>10}{mark}")
    if cold:
        lines.append(f"* not warmed up (< {MIN_ROUNDS} rounds or first round > {MAX_FIRST_OVER_MEDIAN:g}x the "
                     "median): no ratio")
    return lines


SHAPE_TOKEN = re.compile(r"\b(?:train|infer)-[\w-]+|\b\d+x\d+\b|\bsmoke\b(?! run)")


def skip_lines(reasons: "dict[str, int]", width: int = 100) -> list[str]:
    """One line per skip reason with its count, most frequent first; reasons that differ only in the
    shape named ("shape train-48x48 is not benchmarked on cpu") share a line listing the shapes."""
    merged: dict[str, list] = {}
    for reason, n in reasons.items():
        key = SHAPE_TOKEN.sub("<shape>", reason)
        entry = merged.setdefault(key, [0, set()])
        entry[0] += n
        entry[1].update(SHAPE_TOKEN.findall(reason))
    if not merged:
        return []
    lines = [f"skipped {sum(reasons.values())} cases:"]
    for key, (n, shapes) in sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0])):
        line = f"  {n:4d} x {key}" + (f" [{', '.join(sorted(shapes))}]" if "<shape>" in key else "")
        lines.append(line if len(line) <= width else line[: width - 4] + " ...")
    return lines


def environment(rows: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for row in rows:
        for key in ENV_KEYS:
            if key in row["info"] and key not in env:
                env[key] = str(row["info"][key])
    return env


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def group_table(rows: list[dict]) -> list[str]:
    by = {r["backend"]: r for r in rows}
    # Effective bandwidth (minimal traffic over the median time) where the benchmark records the traffic.
    bandwidth = any("min_bytes" in r["info"] for r in rows)
    lines = ["| backend | median ms | × vs reference | × vs compile(reference) | min ms | × vs reference (min) "
             "| peak MB | rounds |" + (" effective GB/s |" if bandwidth else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if bandwidth else "")]
    for r in sorted(rows, key=lambda r: r["median_ms"]):
        steady = warmed_up(r)  # ratios only between steady-state times; a cold case is marked
        ref = by.get("reference") if steady and by.get("reference") and warmed_up(by["reference"]) else None
        comp = by.get(COMPILED) if steady and by.get(COMPILED) and warmed_up(by[COMPILED]) else None
        vs_ref = ref["median_ms"] / r["median_ms"] if ref else None
        vs_comp = comp["median_ms"] / r["median_ms"] if comp else None
        vs_ref_min = ref["min_ms"] / r["min_ms"] if ref and r.get("min_ms") else None
        name = r["backend"] if steady else f"{r['backend']} (not warmed up)"
        line = (f"| {name} | {r['median_ms']:.3f} | {_fmt(vs_ref)} | {_fmt(vs_comp)} | "
                f"{_fmt(r.get('min_ms'), 3)} | {_fmt(vs_ref_min)} | {_fmt(r['peak_mb'], 1)} | {r['rounds']} |")
        if bandwidth:
            moved = r["info"].get("min_bytes")
            line += f" {_fmt(moved / (r['median_ms'] * 1e6) if moved else None, 1)} |"
        lines.append(line)
    return lines


def speedup_chart(rows: list[dict], out: Path, device: str = "") -> list[Path]:
    """One PNG per op (or network family): speed-up over reference by shape, a bar per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["group"].startswith("scaling"):
            continue
        families[r["group"].split(" ")[0] if not r["group"].startswith("network") else "network"].append(r)
    written = []
    for family, frows in sorted(families.items()):
        groups: dict[str, dict[str, float]] = defaultdict(dict)
        for r in frows:
            groups[r["group"]][r["backend"]] = r["median_ms"]
        labels = [g for g in sorted(groups) if "reference" in groups[g]]
        if not labels:
            continue
        backends = sorted({b for g in labels for b in groups[g] if b != "reference"})
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) * max(1, len(backends)) / 2), 4))
        width = 0.8 / max(1, len(backends))
        for i, backend in enumerate(backends):
            ys = [groups[g]["reference"] / groups[g][backend] if backend in groups[g] else 0 for g in labels]
            ax.bar([j + i * width for j in range(len(labels))], ys, width, label=backend)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(labels))])
        ax.set_xticklabels([g.split(" ", 1)[1] for g in labels], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("speed-up over reference (×)")
        ax.set_title(f"{family}: speed-up over reference ({device})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"speedup_{family}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def scaling_chart(rows: list[dict], out: Path, device: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    srows = [r for r in rows if r["group"].startswith("scaling") and "N" in r["info"]]
    if not srows:
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for backend in sorted({r["backend"] for r in srows}):
        pts = sorted((r["info"]["N"], r["median_ms"], r["peak_mb"] or 0.0) for r in srows if r["backend"] == backend)
        ax_t.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=backend)
        ax_m.plot([p[0] for p in pts], [max(p[2], 1e-3) for p in pts], "o-", label=backend)
    for ax, ylabel in ((ax_t, "forward time (ms)"), (ax_m, "peak extra memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("positions N (= M), d = 32")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(f"non-local attention scaling on {device} (missing points: out of memory or too slow, see report)")
    fig.tight_layout()
    path = out / "scaling_nonlocal_attention.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: list[dict], out: Path, skipped: list[dict] = ()) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    env = environment(rows)
    lines = ["# srops benchmark report", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines += [f"- **run**: {rows[0]['datetime'] if rows else '–'}", ""]
    lines += ["Median of the timed rounds; speed-ups are ratios of medians measured in the same run. The",
              "best round (min) and its ratio are given too: on a small shared CPU machine other load stretches",
              "whole stretches of rounds, and the minimum is the least disturbed figure.",
              "Peak MB is the extra memory at the peak of one call beyond what was allocated before it.",
              "Effective GB/s (where given): the op's minimal memory traffic over the median time.", ""]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["group"]].append(r)
    device = env.get("device", "")
    charts = speedup_chart(rows, out, device)
    scaling = scaling_chart(rows, out, device)
    for path in charts + ([scaling] if scaling else []):
        lines += [f"![{path.stem}]({path.name})", ""]
    for group in sorted(groups):
        lines += [f"## {group}", ""] + group_table(groups[group]) + [""]
    if skipped:
        lines += ["## Not measured (out of memory or too slow here)", ""]
        lines += [f"- `{s['name']}`: {s['reason']}" for s in skipped] + [""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="*", type=Path, help="pytest-benchmark JSON files")
    parser.add_argument("--out", type=Path, help="output folder (default: the first JSON's folder)")
    args = parser.parse_args(argv)
    paths = args.json
    if not paths:
        sys.path.insert(0, str(ROOT))
        from srops.info import results_dir

        paths = [results_dir() / "bench.json"]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"bench/report.py: no benchmark JSON at {', '.join(map(str, missing))}; run "
                         "`pytest bench/ --benchmark-only --benchmark-json=<that path>` first")
    rows = load(paths)
    if not rows:
        raise SystemExit(f"bench/report.py: {', '.join(map(str, paths))} hold no benchmark results")
    report = write_report(rows, args.out or paths[0].parent, load_skipped(paths))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
