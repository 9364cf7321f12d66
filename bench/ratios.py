#!/usr/bin/env python3
"""Reads rlhf-bench's JSON and torch_baseline.py's CSV (one run) and prints the ratio table."""
import csv
import json
import sys


def main(bench_json, torch_csv):
    runs = json.load(open(bench_json))["benchmarks"]
    med = {}
    for b in runs:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].replace("/real_time", "")
        name = "/".join(part for part in name.split("/") if not part.startswith(("iterations:", "repeats:")))
        b["key"] = name
        med[name] = b
    torch = {}
    for row in csv.DictReader(open(torch_csv)):
        torch[(row["case"], int(row["N"]), int(row["V"]), int(row["threads"]))] = float(row["median_ms"])

    def ms(b):
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        return b["real_time"] * unit

    def bw(name):
        return med[name]["bytes_per_second"] / 1e9

    print("| case | threads | rlhf++ ms | GB/s | / copy (or read) BW | PyTorch ms | rlhf++ / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for N, V in [(2048, 32000), (512, 128256)]:
        for t in (1, 2):
            for case, ref in (("logits_fwd_bwd", "BM_copy/512/%d" % t), ("logits_fwd", "BM_read/512/%d" % t),
                              ("gjsd", "BM_copy/512/%d" % t)):
                b = med.get(f"BM_{case}/{N}/{V}/{t}")
                if not b:
                    continue
                tt = torch.get((case, N, V, t))
                print(f"| {case} {N}x{V} | {t} | {ms(b):.1f} | {bw(b['key']):.1f} | "
                      f"{bw(b['key']) / bw(ref):.2f} | "
                      f"{tt:.1f} | {ms(b) / tt:.3f} |" if tt else "")
    print()
    print("| fused linear (H = 1024) | threads | rlhf++ ms | its three GEMMs ms | ratio | workspace MiB | dW+dX MiB | PyTorch ms | rlhf++ / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for N, V in [(2048, 32000), (512, 128256)]:
        for t in (1, 2):
            f = med.get(f"BM_fused_linear/{N}/{V}/1024/{t}")
            g = med.get(f"BM_gemm3/{N}/{V}/1024/{t}")
            if not f or not g:
                continue
            tt = torch.get(("fused_linear", N, V, t))
            print(f"| {N}x{V} | {t} | {ms(f):.0f} | {ms(g):.0f} | {ms(f) / ms(g):.2f} | {f['workspace_MiB']:.1f} | "
                  f"{f['grads_MiB']:.0f} | {tt:.0f} | {ms(f) / tt:.2f} |")
    print()
    for t in (1, 2):
        print(f"copy {bw('BM_copy/512/%d' % t):.1f} GB/s, read {bw('BM_read/512/%d' % t):.1f} GB/s at {t} thread(s)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
