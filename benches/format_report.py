#!/usr/bin/env python3
"""Markdown report of `cargo bench --bench format` (benches/format.rs).

Reads criterion's `<criterion dir>/<group>/<function>/<size>/new/{benchmark,estimates}.json` and
prints throughput (from the median time per iteration) and the ratios the targets are stated in.
Every format path is compared with the raw path that moves the same bytes the same way:

- format-ip-1t / raw-ip-1t >= 0.90 and format-oop-1t / raw-oop-1t >= 0.90, for seal and for open
  (format overhead on one core; `ip` = in place, `oop` = out of place);
- format-X-all / format-X-1t >= 1.7 (parallel scaling on two cores), for objects of more than
  one chunk;
- the default chunk size: the smallest power of two whose one-thread (out-of-place) seal
  throughput is >= 95 % of the 4 MiB figure (FORMAT.md section 8).

The cross ratio format-oop-1t / raw-ip-1t (what earlier runs reported as "format / raw") is
printed for information only: it compares two different memory access patterns.

Usage: python3 benches/format_report.py [CRITERION_DIR ...]
(default: $CARGO_TARGET_DIR/criterion, else target/criterion). With several directories (copies
of the criterion directory after each run), prints each run's report, then every target and the
chunk-size rule over all of them (the smallest size that passes in every run). Python 3.11
standard library only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

RATIO_TARGET = 0.90
SCALING_TARGET = 1.7
RULE_FRACTION = 0.95
RULE_REFERENCE = "4MiB"
RULE_FUNCTION = "format-seal-1t"
RULE_FUNCTION_IP = "format-seal-ip-1t"
# Objects no larger than one default chunk (1 MiB) are a single chunk: nothing to parallelise.
DEFAULT_CHUNK_BYTES = 1 << 20
STREAM_SIZE = "256MiB"


@dataclass(frozen=True)
class Estimate:
    median_ns: float
    mad_ns: float
    nbytes: int

    @property
    def gbps(self) -> float:
        """Decimal GB/s (bytes per nanosecond)."""
        return self.nbytes / self.median_ns

    @property
    def noise(self) -> float:
        """Median absolute deviation as a fraction of the median."""
        return self.mad_ns / self.median_ns


def load(root: Path) -> dict[tuple[str, str, str], Estimate]:
    found = {}
    for meta_path in root.glob("*/*/*/new/benchmark.json"):
        meta = json.loads(meta_path.read_text())
        est = json.loads((meta_path.parent / "estimates.json").read_text())
        throughput = meta.get("throughput") or {}
        nbytes = throughput.get("Bytes") or throughput.get("BytesDecimal")
        if not nbytes:
            continue
        key = (meta["group_id"], meta["function_id"], meta["value_str"])
        found[key] = Estimate(
            est["median"]["point_estimate"], est["median_abs_dev"]["point_estimate"], nbytes
        )
    return found


def size_bytes(label: str) -> int:
    for suffix, shift in (("KiB", 10), ("MiB", 20), ("GiB", 30)):
        if label.endswith(suffix):
            return int(label[: -len(suffix)]) << shift
    return int(label)


def fmt_gbps(e: Estimate | None) -> str:
    return "—" if e is None else f"{e.gbps:.2f}"


def ratio(a: Estimate | None, b: Estimate | None) -> float | None:
    return None if a is None or b is None else a.gbps / b.gbps


def fmt_ratio(r: float | None, target: float | None = None) -> str:
    if r is None:
        return "—"
    if target is None:
        return f"{r:.2f}"
    return f"{r:.2f} {'✅' if r >= target else '❌'}"


def sizes_of(data, group: str) -> list[str]:
    return sorted({v for (g, _, v) in data if g == group}, key=size_bytes)


def max_noise(*es: Estimate | None) -> str:
    return f"{100 * max((e.noise for e in es if e), default=0.0):.1f}"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def seal_open_tables(data, group: str, out: list[str], targets: dict[str, float]) -> None:
    """One-thread and all-threads tables of `group`; records every target ratio in `targets`."""
    get = lambda f, s: data.get((group, f, s))  # noqa: E731
    sizes = sizes_of(data, group)

    out.append(f"One thread (format / raw on the same path, target ≥ {RATIO_TARGET:.2f}):\n")
    head = [
        "size",
        "raw-ip-1t",
        "format-ip-1t",
        "format-ip / raw-ip",
        "raw-oop-1t",
        "format-oop-1t",
        "format-oop / raw-oop",
        "format-oop / raw-ip (cross, info)",
        "noise (max MAD %)",
    ]
    out.append(row(head))
    out.append("|" + "---|" * len(head))
    for size in sizes:
        rip, fip, roop, foop = (
            get(f, size) for f in ("raw-ip-1t", "format-ip-1t", "raw-oop-1t", "format-oop-1t")
        )
        r_ip, r_oop = ratio(fip, rip), ratio(foop, roop)
        out.append(
            row(
                [
                    size,
                    fmt_gbps(rip),
                    fmt_gbps(fip),
                    fmt_ratio(r_ip, RATIO_TARGET),
                    fmt_gbps(roop),
                    fmt_gbps(foop),
                    fmt_ratio(r_oop, RATIO_TARGET),
                    fmt_ratio(ratio(foop, rip)),
                    max_noise(rip, fip, roop, foop),
                ]
            )
        )
        if r_ip is not None:
            targets[f"{group} {size}: format-ip-1t / raw-ip-1t ≥ {RATIO_TARGET:.2f}"] = r_ip
        if r_oop is not None:
            targets[f"{group} {size}: format-oop-1t / raw-oop-1t ≥ {RATIO_TARGET:.2f}"] = r_oop

    out.append(f"\nAll threads (scaling over one thread, target ≥ {SCALING_TARGET}):\n")
    head = [
        "size",
        "raw-ip-all",
        "format-ip-all",
        "format-ip all / 1t",
        "raw-oop-all",
        "format-oop-all",
        "format-oop all / 1t",
        "raw-ip all / 1t",
        "raw-oop all / 1t",
        "noise (max MAD %)",
    ]
    out.append(row(head))
    out.append("|" + "---|" * len(head))
    for size in sizes:
        single = size_bytes(size) <= DEFAULT_CHUNK_BYTES
        cells = [size]
        es = []
        for path in ("ip", "oop"):
            raw_all, fmt_all, fmt_1t = (
                get(f"{w}-{path}-{t}", size)
                for (w, t) in (("raw", "all"), ("format", "all"), ("format", "1t"))
            )
            es += [raw_all, fmt_all]
            scaling = ratio(fmt_all, fmt_1t)
            cells += [
                fmt_gbps(raw_all),
                fmt_gbps(fmt_all),
                f"{fmt_ratio(scaling)} (n/a: one chunk)"
                if single
                else fmt_ratio(scaling, SCALING_TARGET),
            ]
            if scaling is not None and not single:
                targets[f"{group} {size}: format-{path}-all / format-{path}-1t ≥ {SCALING_TARGET}"] = (
                    scaling
                )
        for path in ("ip", "oop"):
            cells.append(fmt_ratio(ratio(get(f"raw-{path}-all", size), get(f"raw-{path}-1t", size))))
        cells.append(max_noise(*es))
        out.append(row(cells))


def stream_table(data, out: list[str]) -> None:
    out.append(
        "| streaming (all threads) | object | GB/s | vs one-shot format-oop-all | noise (MAD %) |"
    )
    out.append("|---|---|---|---|---|")
    for (g, f, size), e in sorted(data.items(), key=lambda kv: (kv[0][1].split("-")[0], kv[0][1])):
        if g != "stream":
            continue
        base = data.get(("seal" if f.startswith("encrypt") else "open", "format-oop-all", size))
        out.append(row([f, size, fmt_gbps(e), fmt_ratio(ratio(e, base)), max_noise(e)]))


def rule_choice(fractions: dict[str, float]) -> str | None:
    for size in sorted(fractions, key=size_bytes):
        if fractions[size] >= RULE_FRACTION:
            return size
    return None


def sweep_fractions(data, function: str = RULE_FUNCTION) -> dict[str, float]:
    reference = data.get(("chunk-sweep", function, RULE_REFERENCE))
    out = {}
    for (g, f, size), e in data.items():
        r = ratio(e, reference)
        if g == "chunk-sweep" and f == function and r is not None:
            out[size] = r
    return out


def sweep_table(data, out: list[str]) -> tuple[str | None, str | None]:
    sizes = sizes_of(data, "chunk-sweep")
    get = lambda f, s: data.get(("chunk-sweep", f, s))  # noqa: E731
    oop, ip = sweep_fractions(data, RULE_FUNCTION), sweep_fractions(data, RULE_FUNCTION_IP)
    out.append(
        f"| chunk | out of place GB/s (1 thread, 64 MiB) | fraction of {RULE_REFERENCE} "
        f"| ≥ {RULE_FRACTION:.0%} | in place GB/s | fraction of {RULE_REFERENCE} | noise (max MAD %) |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for size in sizes:
        e, e_ip = get(RULE_FUNCTION, size), get(RULE_FUNCTION_IP, size)
        frac = oop.get(size)
        ok = frac is not None and frac >= RULE_FRACTION
        out.append(
            row(
                [
                    size,
                    fmt_gbps(e),
                    fmt_ratio(frac),
                    "yes" if ok else "no",
                    fmt_gbps(e_ip),
                    fmt_ratio(ip.get(size)),
                    max_noise(e, e_ip),
                ]
            )
        )
    return rule_choice(oop), rule_choice(ip)


STORE_REFERENCE = "1MiB"


def store_sweep_table(data, out: list[str]) -> None:
    sizes = sizes_of(data, "stream-chunk")
    if not sizes:
        return
    get = lambda f, s: data.get(("stream-chunk", f, s))  # noqa: E731
    enc, dec = "encrypt-8MiB-global", "decrypt-8MiB-global"
    out.append(
        f"| chunk | Encryptor GB/s | fraction of {STORE_REFERENCE} | Decryptor GB/s "
        f"| fraction of {STORE_REFERENCE} | noise (max MAD %) |"
    )
    out.append("|---|---|---|---|---|---|")
    for size in sizes:
        e, d = get(enc, size), get(dec, size)
        out.append(
            row(
                [
                    size,
                    fmt_gbps(e),
                    fmt_ratio(ratio(e, get(enc, STORE_REFERENCE))),
                    fmt_gbps(d),
                    fmt_ratio(ratio(d, get(dec, STORE_REFERENCE))),
                    max_noise(e, d),
                ]
            )
        )


def report(data, targets: dict[str, float]) -> tuple[list[str], str | None]:
    out: list[str] = []
    out.append("GB/s are decimal (10^9 B/s) from criterion's median time per iteration.\n")
    out.append("#### Seal\n")
    seal_open_tables(data, "seal", out, targets)
    out.append("\n#### Open\n")
    seal_open_tables(data, "open", out, targets)
    out.append("\n#### Streaming\n")
    stream_table(data, out)
    out.append("\n#### Chunk-size sweep\n")
    chosen, chosen_ip = sweep_table(data, out)
    out.append("")
    if chosen is None:
        out.append("**Default chunk size rule:** no result (4 MiB figure missing).")
    else:
        out.append(
            f"**Default chunk size rule** (smallest power of two with one-thread seal ≥ "
            f"{RULE_FRACTION:.0%} of the {RULE_REFERENCE} figure): **{chosen}** "
            f"(log2 = {size_bytes(chosen).bit_length() - 1}); the in-place sweep would pick "
            f"{chosen_ip or 'none'}."
        )
    if sizes_of(data, "stream-chunk"):
        out.append(
            "\n#### Store's view of the chunk size (64 MiB object, 8 MiB pieces, "
            "DEFAULT_BATCH_CHUNKS, called from outside the pool)\n"
        )
        store_sweep_table(data, out)
    out.append("\n#### Targets\n")
    for name, value in targets.items():
        target = SCALING_TARGET if "all /" in name else RATIO_TARGET
        out.append(f"- {name}: {value:.2f} — {'holds' if value >= target else 'MISSED'}")
    return out, chosen


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]]
    if not roots:
        roots = [Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"]
    runs = []
    for root in roots:
        data = load(root)
        if not data:
            print(f"no criterion results under {root}", file=sys.stderr)
            return 1
        runs.append(data)
    out: list[str] = []
    all_targets: list[dict[str, float]] = []
    for i, (root, data) in enumerate(zip(roots, runs)):
        if len(runs) > 1:
            out.append(f"\n### Run {i + 1} (`{root}`)\n")
        targets: dict[str, float] = {}
        lines, _ = report(data, targets)
        out.extend(lines)
        all_targets.append(targets)
    if len(runs) > 1:
        n = len(runs)
        out.append(f"\n### Targets over {n} runs (— = not measured in that run)\n")
        out.append(
            row(
                ["target"]
                + [f"run {i + 1}" for i in range(n)]
                + ["median", "min", "holds in every run that measured it?"]
            )
        )
        out.append("|---|" + "---|" * (n + 3))
        names = list(dict.fromkeys(k for t in all_targets for k in t))
        for name in names:
            values = [t.get(name) for t in all_targets]
            present = [v for v in values if v is not None]
            target = SCALING_TARGET if "all /" in name else RATIO_TARGET
            low = min(present) if present else None
            mid = statistics.median(present) if present else None
            # Runs that did not measure a target (a filtered run) are left out of the verdict.
            verdict = "yes" if low is not None and low >= target else "no"
            out.append(
                row([name] + [fmt_ratio(v) for v in values] + [fmt_ratio(mid), fmt_ratio(low), verdict])
            )

        for function in (RULE_FUNCTION, RULE_FUNCTION_IP):
            # Only the runs that include the sweep (a filtered run may not).
            swept = [(i, f) for i, f in enumerate(sweep_fractions(d, function) for d in runs) if f]
            if not swept:
                continue
            fractions = [f for _, f in swept]
            sizes = sorted(set().union(*fractions), key=size_bytes)
            out.append(f"\n### Chunk-size rule over the {len(swept)} runs with a sweep (`{function}`)\n")
            out.append(
                row(["chunk"] + [f"run {i + 1}" for i, _ in swept] + ["median", "min"])
            )
            out.append("|---|" + "---|" * (len(swept) + 2))
            stable = None
            for size in sizes:
                fs = [f.get(size) for f in fractions]
                present = [x for x in fs if x is not None]
                low = min(present, default=None)
                mid = statistics.median(present) if present else None
                if stable is None and low is not None and None not in fs and low >= RULE_FRACTION:
                    stable = size
                out.append(
                    row([size] + [fmt_ratio(x) for x in fs] + [fmt_ratio(mid), fmt_ratio(low)])
                )
            per_run = [rule_choice(f) or "none" for f in fractions]
            out.append(
                f"\nPer run: {', '.join(per_run)}. Smallest chunk size at ≥ {RULE_FRACTION:.0%} of "
                f"{RULE_REFERENCE} in every run: **{stable or 'none'}**."
            )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
