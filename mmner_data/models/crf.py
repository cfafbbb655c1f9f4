"""A linear-chain CRF with Viterbi decoding and forward-backward marginals.

Written here rather than taken from ``pytorch-crf`` because pre-annotation needs per-token
marginals (the confidence of each predicted span), which that library does not compute.

Shapes: emissions ``[B, T, L]``, tags ``[B, T]``, mask ``[B, T]`` (True on real positions, which
must be a left-aligned prefix of each row; every row needs at least its first position).
With ``constrain_bio`` the transitions that no valid BIO sequence takes (``O → I-X``,
``B-X/I-X → I-Y`` with ``Y != X``, and starting with ``I-X``) get a large negative score, so
decoding never produces them; the penalty is part of the model's score everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FORBIDDEN = -1.0e4


def bio_constraints(labels: list[str]) -> tuple[Tensor, Tensor]:
    """``(start [L], transitions [L, L])`` penalties: 0 where allowed, :data:`FORBIDDEN` else."""
    n = len(labels)
    start = torch.zeros(n)
    trans = torch.zeros(n, n)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = FORBIDDEN
        for i, frm in enumerate(labels):
            if frm == "O" or frm[2:] != to[2:]:
                trans[i, j] = FORBIDDEN
    return start, trans


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags (see the module docstring for shapes)."""

    def __init__(self, num_tags: int, labels: list[str] | None = None, constrain: bool = False):
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        nn.init.uniform_(self.transitions, -0.1, 0.1)
        if constrain and labels is not None:
            cs, ct = bio_constraints(labels)
        else:
            cs, ct = torch.zeros(num_tags), torch.zeros(num_tags, num_tags)
        self.register_buffer("start_penalty", cs, persistent=False)
        self.register_buffer("transition_penalty", ct, persistent=False)

    def effective_start(self) -> Tensor:
        return self.start + self.start_penalty

    def effective_transitions(self) -> Tensor:
        return self.transitions + self.transition_penalty

    # -- scores ----------------------------------------------------------------------------
    def _forward_alphas(self, em: Tensor, mask: Tensor) -> Tensor:
        """``alpha[b, t, j]``: log-sum of scores of all prefixes ending in tag j at t."""
        trans = self.effective_transitions()
        alpha = self.effective_start() + em[:, 0]
        out = [alpha]
        for t in range(1, em.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + em[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
            out.append(alpha)
        return torch.stack(out, dim=1)

    def _backward_betas(self, em: Tensor, mask: Tensor) -> Tensor:
        """``beta[b, t, i]``: log-sum of scores of all suffixes after tag i at t (end included)."""
        trans = self.effective_transitions()
        beta = self.end.unsqueeze(0).expand(em.shape[0], -1)
        out = [beta]
        for t in range(em.shape[1] - 2, -1, -1):
            # beta_t(i) = logsumexp_j trans[i, j] + em[t+1, j] + beta_{t+1}(j), where t+1 is real.
            nxt = torch.logsumexp(trans.unsqueeze(0) + (em[:, t + 1] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t + 1].unsqueeze(1), nxt, beta)
            out.append(beta)
        out.reverse()
        return torch.stack(out, dim=1)

    def log_partition(self, em: Tensor, mask: Tensor) -> Tensor:
        mask = _fix_mask(mask)
        alpha = self._forward_alphas(em, mask)[:, -1]
        return torch.logsumexp(alpha + self.end, dim=1)

    def score(self, em: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """The unnormalised log score of ``tags`` (positions outside ``mask`` ignored)."""
        mask = _fix_mask(mask)
        trans = self.effective_transitions()
        b = torch.arange(em.shape[0], device=em.device)
        s = self.effective_start()[tags[:, 0]] + em[b, 0, tags[:, 0]]
        for t in range(1, em.shape[1]):
            step = trans[tags[:, t - 1], tags[:, t]] + em[b, t, tags[:, t]]
            s = s + step * mask[:, t]
        last = mask.long().sum(1) - 1
        return s + self.end[tags[b, last]]

    def nll(self, em: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Mean negative log-likelihood of ``tags`` over the batch."""
        em = em.float()
        return (self.log_partition(em, mask) - self.score(em, tags, mask)).mean()

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, em: Tensor, mask: Tensor) -> list[list[int]]:
        """The Viterbi (highest-scoring) tag sequence of each row, cut to its mask length."""
        em = em.float()
        mask = _fix_mask(mask)
        trans = self.effective_transitions()
        score = self.effective_start() + em[:, 0]
        history = []
        for t in range(1, em.shape[1]):
            cand = score.unsqueeze(2) + trans.unsqueeze(0)  # [B, from, to]
            best, idx = cand.max(dim=1)
            nxt = best + em[:, t]
            m = mask[:, t].unsqueeze(1)
            score = torch.where(m, nxt, score)
            # On padding, point each tag at itself so that backtracking passes through.
            ident = torch.arange(self.num_tags, device=em.device).expand_as(idx)
            history.append(torch.where(m, idx, ident))
        score = score + self.end
        lengths = mask.long().sum(1).tolist()
        best_last = score.argmax(dim=1)
        hist = torch.stack(history, dim=1).tolist() if history else []
        out = []
        for b, length in enumerate(lengths):
            tag = int(best_last[b])
            path = [tag]
            for t in range(em.shape[1] - 2, -1, -1):
                tag = hist[b][t][tag]
                path.append(tag)
            path.reverse()
            out.append(path[:length])
        return out

    @torch.no_grad()
    def marginals(self, em: Tensor, mask: Tensor) -> Tensor:
        """``p(y_t = j | x)`` as ``[B, T, L]`` (rows sum to 1 on real positions, 0 on padding)."""
        em = em.float()
        mask = _fix_mask(mask)
        alpha = self._forward_alphas(em, mask)
        beta = self._backward_betas(em, mask)
        log_z = torch.logsumexp(alpha[:, -1] + self.end, dim=1)
        p = torch.exp(alpha + beta - log_z[:, None, None])
        return p * mask.unsqueeze(2)


def _fix_mask(mask: Tensor) -> Tensor:
    mask = mask.bool().clone()
    mask[:, 0] = True
    return mask
