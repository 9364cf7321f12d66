#!/usr/bin/env python3
"""PyTorch side of the GPU benchmark: the same math as bench_gpu.cu, eager and
torch.compile, plus Liger-Kernel's fused linear cross-entropy and Cut
Cross-Entropy at the fused-linear shape. One JSON object per line on stdout.

    python3 bench/gpu/bench_torch.py [--quick]
"""
import json
import sys
import time

import torch

QUICK = "--quick" in sys.argv
dev = "cuda"


def emit(d):
    print(json.dumps(d), flush=True)


def time_ms(f, warm=3, reps=10):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def peak_extra_mib(f):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    f()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def guarded(name, fn):
    try:
        fn()
    except torch.cuda.OutOfMemoryError as e:  # report, go on
        emit({"case": name, "error": "out of memory: " + str(e).splitlines()[0]})
        torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001 - a missing package or a compile failure is reported, not fatal
        emit({"case": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
        torch.cuda.empty_cache()


emit({"case": "torch", "version": torch.__version__, "device": torch.cuda.get_device_name()})

# 1. copy bandwidth in this process (bytes read + written)
nbytes = (256 << 20) if QUICK else (4 << 30)
src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
dst = torch.empty_like(src)
ms = time_ms(lambda: dst.copy_(src))
emit({"case": "copy", "bytes": nbytes, "ms": ms, "gbs": 2 * nbytes / (ms * 1e6)})
del src, dst

# 2. log-probs + entropy from bf16 logits, forward and forward + backward
N, V = (1024 if QUICK else 16384), 128256


def pg_entropy(z, labels, adv, w, c=0.01):
    lp = torch.log_softmax(z.float(), dim=-1)
    logp = lp.gather(1, labels[:, None]).squeeze(1)
    h = -(lp.exp() * lp).sum(-1)
    return -(w * (adv * logp + c * h)).sum()


def logits_cases():
    z = torch.randn(N, V, device=dev, dtype=torch.bfloat16) * 2
    labels = torch.randint(0, V, (N,), device=dev)
    adv = torch.ones(N, device=dev)
    w = torch.full((N,), 1.0 / N, device=dev)

    def fwd():
        with torch.no_grad():
            lp = torch.log_softmax(z.float(), dim=-1)
            lp.gather(1, labels[:, None])
            -(lp.exp() * lp).sum(-1)

    emit({"case": "logits_fwd", "impl": "eager", "N": N, "V": V, "ms": time_ms(fwd)})
    zg = z.clone().requires_grad_(True)

    def fwd_bwd(f):
        def run():
            zg.grad = None
            f(zg, labels, adv, w).backward()
        return run

    run = fwd_bwd(pg_entropy)
    emit({"case": "logits_fused_fwd_bwd", "impl": "eager", "N": N, "V": V, "ms": time_ms(run),
          "peak_extra_mib": peak_extra_mib(run)})
    compiled = torch.compile(pg_entropy)
    runc = fwd_bwd(compiled)
    emit({"case": "logits_fused_fwd_bwd", "impl": "torch.compile", "N": N, "V": V, "ms": time_ms(runc),
          "peak_extra_mib": peak_extra_mib(runc)})


guarded("logits", logits_cases)
torch.cuda.empty_cache()

# 3. PPO clipped policy loss (verl compute_policy_loss_vanilla, token-mean), B = 256, T = 4096
B, T = (64 if QUICK else 256), 4096


def ppo_loss(logp, old, adv, mask, eps=0.2, c=3.0):
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - eps, 1 + eps)
    c1 = torch.maximum(l1, l2)
    c2 = torch.minimum(-adv * c, c1)
    loss = torch.where(adv < 0, c2, c1)
    return (loss * mask).sum() / mask.sum()


def objective_cases():
    logp = (torch.randn(B, T, device=dev) * 0.5).requires_grad_(True)
    old = torch.randn(B, T, device=dev) * 0.5
    adv = torch.randn(B, T, device=dev)
    mask = torch.ones(B, T, device=dev)
    for impl, f in (("eager", ppo_loss), ("torch.compile", torch.compile(ppo_loss))):
        def run():
            logp.grad = None
            f(logp, old, adv, mask).backward()
        emit({"case": "ppo_policy_loss", "impl": impl, "B": B, "T": T, "ms": time_ms(run)})


guarded("ppo_policy_loss", objective_cases)
torch.cuda.empty_cache()

# 4. fused linear cross-entropy: N x H hidden states, V x H LM head, bf16
NL, H = (2048 if QUICK else 16384), (1024 if QUICK else 4096)


def linear_cases():
    x = (torch.randn(NL, H, device=dev, dtype=torch.bfloat16)).requires_grad_(True)
    wt = (torch.randn(V, H, device=dev, dtype=torch.bfloat16) * 0.02).requires_grad_(True)
    labels = torch.randint(0, V, (NL,), device=dev)
    grads_mib = (x.numel() + wt.numel()) * 2 / 2**20

    def materialized():
        logits = x @ wt.t()
        return torch.nn.functional.cross_entropy(logits.float(), labels)

    impls = [("torch eager (materialized logits)", materialized)]
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss()
        impls.append(("liger-kernel", lambda: liger(wt, x, labels)))
    except Exception as e:  # noqa: BLE001
        emit({"case": "fused_linear", "impl": "liger-kernel", "error": f"not available: {e}"})
    try:
        from cut_cross_entropy import linear_cross_entropy

        impls.append(("cut-cross-entropy", lambda: linear_cross_entropy(x, wt, labels)))
    except Exception as e:  # noqa: BLE001
        emit({"case": "fused_linear", "impl": "cut-cross-entropy", "error": f"not available: {e}"})
    for impl, f in impls:
        def run(f=f):
            x.grad = None
            wt.grad = None
            f().backward()

        def one(impl=impl, run=run):
            ms = time_ms(run, 2, 5)
            x.grad = None
            wt.grad = None
            extra = peak_extra_mib(run)
            tflops = 6.0 * NL * H * V / (ms * 1e9)
            emit({"case": "fused_linear", "impl": impl, "N": NL, "H": H, "V": V, "ms": ms, "tflops": tflops,
                  "peak_extra_mib": extra, "grads_mib": grads_mib, "memory_ratio": extra / grads_mib})

        guarded("fused_linear " + impl, one)
        torch.cuda.empty_cache()


guarded("fused_linear", linear_cases)
