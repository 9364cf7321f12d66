#!/usr/bin/env python3
"""PyTorch eager baselines for rlhf-bench's cases (Debian python3-torch, CPU).

Prints CSV: case,N,V,H,threads,median_ms. Cases:
  logits_fwd_bwd  log_softmax + gather (log-prob) + entropy, loss = -(A*logp + c*H) mean, backward to logits
  logits_fwd      the same forward only (no autograd)
  gjsd            TRL's generalized JSD (beta 0.5) of student and teacher logits, backward to the student's
  fused_linear    logits = X W^T materialized, same loss, backward to X and W
  gemm3           the three GEMMs alone: X W^T, dZ W, dZ^T X
"""
import argparse
import statistics
import time

import torch


def timed(fn, reps):
    fn()  # warm up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-linear", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    print("case,N,V,H,threads,median_ms")
    for N, V in [(2048, 32000), (512, 128256)]:
        z0 = torch.randn(N, V) * 2
        labels = torch.randint(0, V, (N,))
        adv = torch.randn(N)
        for t in a.threads:
            torch.set_num_threads(t)

            def fwd_bwd():
                z = z0.detach().requires_grad_(True)
                lsm = torch.log_softmax(z, dim=-1)
                logp = lsm.gather(-1, labels[:, None]).squeeze(-1)
                ent = -(lsm.exp() * lsm).sum(-1)
                loss = -(adv * logp + 0.01 * ent).mean()
                loss.backward()
                return z.grad

            def fwd():
                with torch.no_grad():
                    lsm = torch.log_softmax(z0, dim=-1)
                    logp = lsm.gather(-1, labels[:, None]).squeeze(-1)
                    ent = -(lsm.exp() * lsm).sum(-1)
                return logp, ent

            y0 = torch.randn(N, V) * 2

            def gjsd():
                # TRL GKDTrainer.generalized_jsd_loss, beta 0.5, temperature 1, batchmean
                z = z0.detach().requires_grad_(True)
                beta = 0.5
                s = torch.log_softmax(z, dim=-1)
                t = torch.log_softmax(y0, dim=-1)
                bt = torch.tensor(beta, dtype=s.dtype)
                m = torch.logsumexp(torch.stack([s + torch.log(1 - bt), t + torch.log(bt)]), dim=0)
                kl_t = torch.nn.functional.kl_div(m, t, reduction="none", log_target=True)
                kl_s = torch.nn.functional.kl_div(m, s, reduction="none", log_target=True)
                jsd = beta * kl_t + (1 - beta) * kl_s
                loss = jsd.sum() / jsd.size(0)
                loss.backward()
                return z.grad

            print(f"gjsd,{N},{V},0,{t},{timed(gjsd, a.reps):.3f}", flush=True)
            print(f"logits_fwd_bwd,{N},{V},0,{t},{timed(fwd_bwd, a.reps):.3f}", flush=True)
            print(f"logits_fwd,{N},{V},0,{t},{timed(fwd, a.reps):.3f}", flush=True)
            if a.skip_linear:
                continue
            H = 1024
            X0 = torch.randn(N, H)
            W0 = torch.randn(V, H) * 0.05

            def linear():
                X = X0.detach().requires_grad_(True)
                W = W0.detach().requires_grad_(True)
                z = X @ W.t()
                lsm = torch.log_softmax(z, dim=-1)
                logp = lsm.gather(-1, labels[:, None]).squeeze(-1)
                ent = -(lsm.exp() * lsm).sum(-1)
                loss = -(adv * logp + 0.01 * ent).mean()
                loss.backward()
                return X.grad, W.grad

            def gemm3():
                with torch.no_grad():
                    z = X0 @ W0.t()
                    return z @ W0, z.t() @ X0

            print(f"fused_linear,{N},{V},{H},{t},{timed(linear, max(2, a.reps // 2)):.3f}", flush=True)
            print(f"gemm3,{N},{V},{H},{t},{timed(gemm3, max(2, a.reps // 2)):.3f}", flush=True)


if __name__ == "__main__":
    main()
