#!/usr/bin/env python3
"""Reads rlhf-bench-objectives' JSON (one run per thread count, OMP_NUM_THREADS=t) and
torch_objectives.py's CSV, and prints the table of docs/performance.md.
Usage: objective_ratios.py TORCH_CSV 1:ONE_THREAD.json 2:TWO_THREADS.json"""
import csv
import json
import sys


def medians(path):
    med = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("aggregate_name") not in (None, "median"):
            continue
        name = b["run_name"].replace("/real_time", "")
        name = "/".join(p for p in name.split("/") if not p.startswith(("iterations:", "repeats:")))
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        med[name] = (b["real_time"] * unit, b.get("bytes_per_second", 0) / 1e9)
    return med


CASES = ("ppo_policy_loss", "variant_gspo", "variant_sapo", "variant_cispo", "variant_dppo_tv", "is_weights",
         "ppo_value_loss", "entropy_bonus", "a2c_loss", "kl_loss", "kl_reward", "kl_estimate", "actor_loss",
         "masked_mean", "masked_whiten", "aggregate", "gae", "reinforce_pp")


def main(torch_csv, *runs):
    torch = {}
    for row in csv.DictReader(open(torch_csv)):
        torch[(row["case"], int(row["threads"]))] = float(row["median_ms"])
    print("| objective 256 x 4096 float | threads | rlhf++ ms | GB/s | / copy BW (512 MiB) | / copy of 20 MiB | "
          "PyTorch eager ms | rlhf++ / PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    copies = []
    for run in runs:
        t, path = run.split(":", 1)
        t = int(t)
        med = medians(path)
        copy = med.get(f"BM_copy/512/{t}", (0, 0))[1]
        small = med.get(f"BM_copy/20/{t}", (0, 0))[1]
        copies.append((t, copy, small))
        for case in CASES:
            b = med.get(f"BM_{case}/256/4096")
            if not b:
                continue
            tt = torch.get((case, t))
            rel = f"{tt:.1f} | {b[0] / tt:.3f}" if tt else "- | -"
            sm = f"{b[1] / small:.2f}" if small else "-"
            print(f"| {case} | {t} | {b[0]:.2f} | {b[1]:.1f} | {b[1] / copy:.2f} | {sm} | {rel} |")
    print()
    for t, c, sm in copies:
        print(f"copy bandwidth (same run, {t} thread(s)): {c:.1f} GB/s over 512 MiB, {sm:.1f} GB/s over 20 MiB")


if __name__ == "__main__":
    main(*sys.argv[1:])
