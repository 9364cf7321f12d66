#!/usr/bin/env python3
"""The GPU ratio table from bench_gpu (ours.jsonl) and bench_torch
(torch.jsonl), measured in the same run, and the issue's targets.

    python3 bench/gpu/report.py OURS.jsonl TORCH.jsonl
"""
import json
import sys


def load(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    except OSError:
        pass
    return rows


ours, torch_rows = load(sys.argv[1]), load(sys.argv[2])


def find(rows, case, **kw):
    for r in rows:
        if r.get("case") == case and all(r.get(k) == v for k, v in kw.items()) and "error" not in r:
            return r
    return None


dev = find(ours, "device") or {}
copy = find(ours, "copy") or {}
gemm = find(ours, "gemm_bf16") or {}
print(f"device: {dev.get('name', '?')}; copy {copy.get('gbs', float('nan')):.0f} GB/s (read + write); "
      f"bf16 GEMM {gemm.get('tflops', float('nan')):.0f} TFLOP/s (8192^3), measured in this run\n")

print("| case | ours ms | GB/s | of copy | PyTorch eager ms | torch.compile ms | eager / ours | compile / ours |")
print("|---|---|---|---|---|---|---|---|")
for case in ("logits_fwd", "logits_bwd", "logits_fwd_bwd_separate", "logits_fused_fwd_bwd",
             "logits_fused_fwd_bwd_nocache", "ppo_policy_loss", "ppo_policy_loss_async",
             "ppo_value_loss", "gae_whitened"):
    o = find(ours, case)
    if not o:
        continue
    e = find(torch_rows, case, impl="eager")
    c = find(torch_rows, case, impl="torch.compile")
    em = f"{e['ms']:.3f}" if e else "-"
    cm = f"{c['ms']:.3f}" if c else "-"
    er = f"{e['ms'] / o['ms']:.1f}x" if e else "-"
    cr = f"{c['ms'] / o['ms']:.1f}x" if c else "-"
    print(f"| {case} | {o['ms']:.3f} | {o['gbs']:.0f} | {o['of_copy']:.2f} | {em} | {cm} | {er} | {cr} |")

print("\n| fused linear | chunk | ms | TFLOP/s (6NHV / t) | of GEMM peak | peak extra MiB | memory ratio |")
print("|---|---|---|---|---|---|---|")
best = None
for r in ours:
    if r.get("case") == "fused_linear" and "error" not in r:
        print(f"| rlhf++ | {r['chunk']} | {r['ms']:.1f} | {r['tflops']:.0f} | {r['of_gemm_peak']:.2f} | "
              f"{r['peak_extra_mib']:.0f} | {r['memory_ratio']:.3f} (outputs + extra) / outputs |")
        if best is None or r["ms"] < best["ms"]:
            best = r
for r in torch_rows:
    if r.get("case") == "fused_linear":
        if "error" in r:
            print(f"| {r.get('impl', '?')} | - | error: {r['error']} | | | | |")
        else:
            print(f"| {r['impl']} | - | {r['ms']:.1f} | {r['tflops']:.0f} | "
                  f"{r['tflops'] / gemm['tflops']:.2f} | {r['peak_extra_mib']:.0f} | {r['memory_ratio']:.3f} extra / grads |"
                  if gemm else f"| {r['impl']} | - | {r['ms']:.1f} | {r['tflops']:.0f} | - | {r['peak_extra_mib']:.0f} | - |")

print("\nTargets (issue 5):")


def target(name, ok, detail):
    print(f"  {'MET ' if ok else 'MISS'} {name}: {detail}")


f = find(ours, "logits_fused_fwd_bwd")
e = find(torch_rows, "logits_fused_fwd_bwd", impl="eager")
if f:
    target("fused logits fwd+bwd >= 0.80 of copy", f["of_copy"] >= 0.8, f"{f['of_copy']:.2f}")
if f and e:
    target("fused logits fwd+bwd >= 3x PyTorch eager", e["ms"] / f["ms"] >= 3, f"{e['ms'] / f['ms']:.1f}x")
if best:
    ws = best["chunk"] * best["V"] * 2 / 2**20
    ratio_wo_ws = (best["outputs_mib"] + best["peak_extra_mib"] - ws) / best["outputs_mib"]
    target("fused linear peak extra <= 1.1 x (dW + dX) + bounded workspace", ratio_wo_ws <= 1.1,
           f"{ratio_wo_ws:.3f} x outputs without the {ws:.0f} MiB workspace (chunk {best['chunk']})")
    target("fused linear GEMMs >= 0.60 of bf16 peak", best["of_gemm_peak"] >= 0.6, f"{best['of_gemm_peak']:.2f}")
p = find(ours, "ppo_policy_loss")
pa = find(ours, "ppo_policy_loss_async")
if p:
    target("[B, T] objectives >= 0.70 of copy", p["of_copy"] >= 0.7 or (pa is not None and pa["of_copy"] >= 0.7),
           f"policy loss {p['of_copy']:.2f} (with the read-back), "
           f"{pa['of_copy']:.2f} (asynchronous)" if pa else f"policy loss {p['of_copy']:.2f}")
