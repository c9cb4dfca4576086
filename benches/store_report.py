#!/usr/bin/env python3
"""Ratios of `cargo bench --bench store`: encrypted vs unencrypted, same backend, same run.

Reads criterion's estimates (median time per iteration) from target/criterion/store/ (or the
directory given as the first argument) and prints a Markdown table.
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
mib = int(os.environ.get("ENCRYPT_REPO_BENCH_MIB", "1024"))


def median_s(op, name):
    path = os.path.join(root, "store", op, name, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


print(f"| op | backend | unencrypted MiB/s | encrypted MiB/s | encrypted ÷ unencrypted |")
print("|---|---|---:|---:|---:|")
for op in ("put", "get"):
    for backend in ("local", "memory"):
        plain = mib / median_s(op, f"{backend}-plain")
        enc = mib / median_s(op, f"{backend}-encrypted")
        print(f"| {op} | {backend} | {plain:.0f} | {enc:.0f} | {enc / plain:.2f} |")
