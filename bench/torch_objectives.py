#!/usr/bin/env python3
"""PyTorch eager baselines for rlhf-bench-objectives' [B, T] cases (Debian python3-torch, CPU, float32).

Each case is the objective as verl / OpenRLHF write it in eager PyTorch, the
forward and the gradient (autograd backward) to its inputs, the statistics
read out as Python floats (what a trainer logs). Prints CSV:
case,B,T,threads,median_ms. Cases (names match BM_<case>/B/T):
  ppo_policy_loss   verl compute_policy_loss_vanilla: clipped ratio, dual clip (3.0), token-mean,
                    pg_clipfrac, ppo_kl, pg_clipfrac_lower; backward to log_prob
  ppo_value_loss    verl compute_value_loss: clipped value, 0.5 * max of squares, token-mean,
                    vf_clipfrac; backward to vpreds
  entropy_bonus     -coef * token-mean(entropy); backward to entropy
  gae               verl compute_gae_advantage_return (gamma 1, lam 0.95): the reversed loop over T
                    with the mask carrying nextvalues / lastgaelam, returns, masked_whiten
  reinforce_pp      verl compute_reinforce_plus_plus_outcome_advantage's token loop (gamma 1):
                    running return over valid tokens, masked_whiten, times the mask
"""
import argparse

import torch

from torch_baseline import timed  # (bench/: the same median-of-reps timer)


def masked_mean(x, m):
    return (x * m).sum() / (m.sum() + 1e-8)


def policy(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    ppo_kl = masked_mean(-neg_kl, mask)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 0.8, 1.2)
    c1 = torch.maximum(l1, l2)
    clipfrac = masked_mean(torch.gt(l2, l1).float(), mask)
    l3 = -adv * 3.0
    c2 = torch.min(l3, c1)
    lower = masked_mean(torch.gt(c1, l3) * (adv < 0).float(), mask)
    pg = torch.where(adv < 0, c2, c1)
    loss = masked_mean(pg, mask)
    loss.backward()
    return loss.item(), clipfrac.item(), ppo_kl.item(), lower.item(), logp.grad


def value(v0, ret, old, mask):
    v = v0.detach().requires_grad_(True)
    vc = old + torch.clamp(v - old, -0.5, 0.5)
    l1 = (v - ret) ** 2
    l2 = (vc - ret) ** 2
    loss = 0.5 * masked_mean(torch.max(l1, l2), mask)
    clipfrac = masked_mean(torch.gt(l2, l1).float(), mask)
    loss.backward()
    return loss.item(), clipfrac.item(), v.grad


def entropy(h0, mask):
    h = h0.detach().requires_grad_(True)
    ent = masked_mean(h, mask)
    loss = -0.01 * ent
    loss.backward()
    return loss.item(), h.grad


def masked_whiten(x, m):
    mean = masked_mean(x, m)
    c = x - mean
    var = masked_mean(c * c, m)
    n = m.sum()
    var = var * (n / (n - 1))
    return c * torch.rsqrt(var + 1e-8)


def gae(r, v, m, gamma=1.0, lam=0.95):
    with torch.no_grad():
        nextvalues = torch.zeros(r.shape[0])
        lastgaelam = torch.zeros(r.shape[0])
        out = []
        for t in reversed(range(r.shape[1])):
            delta = r[:, t] + gamma * nextvalues - v[:, t]
            lastgaelam_ = delta + gamma * lam * lastgaelam
            nextvalues = v[:, t] * m[:, t] + (1 - m[:, t]) * nextvalues
            lastgaelam = lastgaelam_ * m[:, t] + (1 - m[:, t]) * lastgaelam
            out.append(lastgaelam)
        adv = torch.stack(out[::-1], dim=1)
        ret = adv + v
        return masked_whiten(adv, m), ret


def reinforce_pp(r, m, gamma=1.0):
    with torch.no_grad():
        ret = torch.zeros_like(r)
        running = torch.zeros(r.shape[0])
        for t in reversed(range(r.shape[1])):
            running = r[:, t] + gamma * running
            ret[:, t] = running
            running = running * m[:, t]
        return masked_whiten(ret, m) * m, ret


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = ap.parse_args()
    torch.manual_seed(0)
    B, T = 256, 4096
    old = -1 + 0.3 * torch.randn(B, T)
    logp = old + 0.1 * torch.randn(B, T)
    adv = torch.randn(B, T)
    mask = torch.ones(B, T)
    print("case,B,T,threads,median_ms")
    for t in a.threads:
        torch.set_num_threads(t)
        print(f"ppo_policy_loss,{B},{T},{t},{timed(lambda: policy(logp, old, adv, mask), a.reps):.3f}", flush=True)
        print(f"ppo_value_loss,{B},{T},{t},{timed(lambda: value(logp, adv, old, mask), a.reps):.3f}", flush=True)
        print(f"entropy_bonus,{B},{T},{t},{timed(lambda: entropy(adv, mask), a.reps):.3f}", flush=True)
        print(f"gae,{B},{T},{t},{timed(lambda: gae(adv, old, mask), max(1, a.reps // 2)):.3f}", flush=True)
        print(f"reinforce_pp,{B},{T},{t},{timed(lambda: reinforce_pp(adv, mask), max(1, a.reps // 2)):.3f}", flush=True)


if __name__ == "__main__":
    main()
