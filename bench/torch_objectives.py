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
  variant_gspo      verl compute_policy_loss_gspo (sequence ratio, clamp 10, seq-mean-token-mean)
  variant_sapo      verl compute_policy_loss_sapo (sigmoid gate, tau 1 / 1.05, seq-mean-token-mean)
  variant_cispo     verl compute_policy_loss_cispo (detached clipped ratio times logp, token-mean)
  variant_dppo_tv   verl compute_policy_loss_dppo_tv (trust region on p - q, detached capped ratio)
  is_weights        verl's token TIS weights: exp(old - rollout) truncated at 2, vllm_kl
  a2c_loss          Stable-Baselines3 A2C (masked): -A logp, mse(R, V), -entropy; backward to all three
  kl_loss           verl kl_penalty low_var_kl (clamps 20 / 10), token-mean, backward to logp
  kl_reward         verl apply_kl_penalty (k1): rewards = scores - beta kl mask, current_kl
  kl_estimate       low_var_kl (clamps 20 / 10) and its derivative by autograd
  actor_loss        ppo_policy_loss - 0.01 token-mean(entropy) + 0.001 kl_loss; backward to logp, entropy
  masked_whiten     verl masked_whiten
  masked_mean       verl masked_mean, backward to values
  aggregate         verl agg_loss seq-mean-token-mean, backward to the loss matrix
"""
import argparse

import torch

from torch_baseline import timed  # (bench/: the same median-of-reps timer)


def masked_mean(x, m):
    return (x * m).sum() / (m.sum() + 1e-8)


def ppo_terms(logp, old, adv, mask):
    """verl's clipped token loss with dual clip: (pg, clipfrac, ppo_kl, clipfrac_lower)."""
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
    pg = masked_mean(torch.where(adv < 0, c2, c1), mask)
    return pg, clipfrac, ppo_kl, lower


def policy(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    loss, clipfrac, ppo_kl, lower = ppo_terms(logp, old, adv, mask)
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


def seq_mean_token_mean(x, m):
    return ((x * m).sum(-1) / (m.sum(-1) + 1e-8)).mean()


def gspo(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    neg_kl = logp - old
    seq_len = mask.sum(-1).clamp(min=1)
    neg_kl_seq = (neg_kl * mask).sum(-1) / seq_len
    log_ratio = logp - logp.detach() + neg_kl_seq.detach().unsqueeze(-1)
    ratio = torch.exp(torch.clamp(log_ratio, max=10.0))
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 0.8, 1.2)
    pg = torch.maximum(l1, l2)
    loss = seq_mean_token_mean(pg, mask)
    clipfrac = masked_mean(torch.gt(l2, l1).float(), mask)
    ppo_kl = masked_mean(-neg_kl, mask)
    loss.backward()
    return loss.item(), clipfrac.item(), ppo_kl.item(), logp.grad


def sapo(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    taus = torch.where(adv > 0, torch.full_like(adv, 1.0), torch.full_like(adv, 1.05))
    gates = torch.sigmoid(taus * (ratio - 1.0)) * (4.0 / taus)
    loss = seq_mean_token_mean(-gates * adv, mask)
    ppo_kl = masked_mean(-neg_kl, mask)
    loss.backward()
    return loss.item(), ppo_kl.item(), logp.grad


def cispo(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    clipped = torch.clamp(ratio, 0.8, 1.2)
    loss = masked_mean(-clipped.detach() * adv * logp, mask)
    clipfrac = masked_mean(torch.ne(clipped, ratio).float(), mask)
    ppo_kl = masked_mean(-neg_kl, mask)
    loss.backward()
    return loss.item(), clipfrac.item(), ppo_kl.item(), logp.grad


def dppo_tv(logp0, old, adv, mask):
    logp = logp0.detach().requires_grad_(True)
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    p, q = torch.exp(logp.detach()), torch.exp(old)
    valid = torch.where(adv > 0, (p - q) <= 0.2, (p - q) >= -0.2).float()
    coef = (-adv * torch.clamp(ratio, max=20.0) * valid).detach()
    loss = masked_mean(coef * logp, mask)
    ppo_kl = masked_mean(-neg_kl, mask)
    clipfrac = masked_mean(1.0 - valid, mask)
    loss.backward()
    return loss.item(), ppo_kl.item(), clipfrac.item(), logp.grad


def is_weights(old, rollout, mask):
    with torch.no_grad():
        log_ratio = old - rollout
        w = torch.exp(torch.clamp(log_ratio, -20.0, 20.0)).clamp(max=2.0)
        vllm_kl = masked_mean(rollout - old, mask)
        return w, vllm_kl.item()


def a2c(logp0, v0, adv, ret, h0, mask):
    logp = logp0.detach().requires_grad_(True)
    v = v0.detach().requires_grad_(True)
    h = h0.detach().requires_grad_(True)
    policy_loss = -masked_mean(adv * logp, mask)
    value_loss = masked_mean((ret - v) ** 2, mask)
    entropy_loss = -masked_mean(h, mask)
    loss = policy_loss + 0.01 * entropy_loss + 0.5 * value_loss
    loss.backward()
    return loss.item(), policy_loss.item(), value_loss.item(), entropy_loss.item(), logp.grad, v.grad, h.grad


def k3(logp, ref):
    kl = torch.clamp(ref - logp, -20.0, 20.0)
    return torch.clamp(torch.exp(kl) - kl - 1, -10.0, 10.0)


def kl_loss(logp0, ref, mask):
    logp = logp0.detach().requires_grad_(True)
    loss = masked_mean(k3(logp, ref), mask)
    (0.001 * loss).backward()
    return loss.item(), logp.grad


def kl_reward(scores, logp, ref, mask):
    with torch.no_grad():
        kl = (logp - ref) * mask
        rewards = scores - 0.05 * kl
        current_kl = ((kl * mask).sum(-1) / (mask.sum(-1) + 1e-8)).mean()
        return rewards, current_kl.item()


def kl_estimate(logp0, ref):
    logp = logp0.detach().requires_grad_(True)
    kl = k3(logp, ref)
    kl.backward(torch.ones_like(kl))
    return kl.detach(), logp.grad


def actor(logp0, old, adv, mask, h0, ref):
    logp = logp0.detach().requires_grad_(True)
    h = h0.detach().requires_grad_(True)
    pg, clipfrac, ppo_kl, lower = ppo_terms(logp, old, adv, mask)
    ent = masked_mean(h, mask)
    kl = masked_mean(k3(logp, ref), mask)
    loss = pg - 0.01 * ent + 0.001 * kl
    loss.backward()
    return loss.item(), clipfrac.item(), ppo_kl.item(), lower.item(), ent.item(), kl.item(), logp.grad, h.grad


def whiten(x, m):
    with torch.no_grad():
        return masked_whiten(x, m)


def mean_grad(x0, m):
    x = x0.detach().requires_grad_(True)
    loss = masked_mean(x, m)
    loss.backward()
    return loss.item(), x.grad


def aggregate(x0, m):
    x = x0.detach().requires_grad_(True)
    loss = seq_mean_token_mean(x, m)
    loss.backward()
    return loss.item(), x.grad


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
        cases = {
            "variant_gspo": lambda: gspo(logp, old, adv, mask),
            "variant_sapo": lambda: sapo(logp, old, adv, mask),
            "variant_cispo": lambda: cispo(logp, old, adv, mask),
            "variant_dppo_tv": lambda: dppo_tv(logp, old, adv, mask),
            "is_weights": lambda: is_weights(old, logp, mask),
            "a2c_loss": lambda: a2c(logp, old, adv, adv, old, mask),
            "kl_loss": lambda: kl_loss(logp, old, mask),
            "kl_reward": lambda: kl_reward(adv, logp, old, mask),
            "kl_estimate": lambda: kl_estimate(logp, old),
            "actor_loss": lambda: actor(logp, old, adv, mask, adv, old),
            "masked_whiten": lambda: whiten(adv, mask),
            "masked_mean": lambda: mean_grad(adv, mask),
            "aggregate": lambda: aggregate(adv, mask),
        }
        for name, f in cases.items():
            print(f"{name},{B},{T},{t},{timed(f, a.reps):.3f}", flush=True)


if __name__ == "__main__":
    main()
