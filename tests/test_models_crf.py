"""The CRF against brute force: Viterbi, the partition function, marginals, masking, BIO rules."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.models.crf import CRF, FORBIDDEN, bio_constraints

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crf(seed: int, constrain: bool) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(len(LABELS), LABELS, constrain=constrain)
    with torch.no_grad():
        crf.start.normal_()
        crf.end.normal_()
        crf.transitions.normal_()
    return crf


@torch.no_grad()
def _path_score(crf: CRF, em: torch.Tensor, path: tuple[int, ...]) -> float:
    """Score of one path computed independently of the CRF's own code."""
    start, trans = crf.effective_start(), crf.effective_transitions()
    s = float(start[path[0]] + em[0, path[0]])
    for t in range(1, len(path)):
        s += float(trans[path[t - 1], path[t]] + em[t, path[t]])
    return s + float(crf.end[path[-1]])


def _all_paths(length: int) -> list[tuple[int, ...]]:
    return list(itertools.product(range(len(LABELS)), repeat=length))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    constrain=st.booleans(),
)
def test_decode_partition_and_marginals_equal_brute_force(seed, lengths, constrain):
    crf = _crf(seed, constrain)
    torch.manual_seed(seed + 1)
    T = max(lengths)
    em = torch.randn(len(lengths), T, len(LABELS)) * 2
    mask = torch.tensor([[t < n for t in range(T)] for n in lengths])
    decoded = crf.decode(em, mask)
    log_z = crf.log_partition(em, mask).detach()
    marg = crf.marginals(em, mask)
    for b, n in enumerate(lengths):
        paths = _all_paths(n)
        scores = torch.tensor([_path_score(crf, em[b], p) for p in paths], dtype=torch.float64)
        best = paths[int(scores.argmax())]
        assert tuple(decoded[b]) == best
        assert float(log_z[b]) == pytest.approx(float(torch.logsumexp(scores, 0)), rel=1e-4)
        probs = torch.softmax(scores, 0)
        for t in range(n):
            for j in range(len(LABELS)):
                expect = float(sum(p for p, path in zip(probs, paths, strict=True) if path[t] == j))
                assert float(marg[b, t, j]) == pytest.approx(expect, abs=1e-4)
        # Marginals sum to one on real positions and are zero on padding.
        assert torch.allclose(marg[b, :n].sum(-1), torch.ones(n), atol=1e-5)
        assert float(marg[b, n:].abs().sum()) == 0.0
        # The score and NLL of the best path agree with brute force.
        tags = torch.tensor([list(best) + [0] * (T - n)])
        s = crf.score(em[b : b + 1], tags, mask[b : b + 1]).detach()
        assert float(s) == pytest.approx(_path_score(crf, em[b], best), rel=1e-4, abs=1e-3)


def test_padding_does_not_change_a_row():
    crf = _crf(3, True)
    torch.manual_seed(0)
    em = torch.randn(1, 3, len(LABELS))
    padded = torch.cat([em, torch.randn(1, 4, len(LABELS)) * 50], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 4])
    assert crf.decode(padded, mask) == crf.decode(em, torch.ones(1, 3, dtype=torch.bool))
    assert torch.allclose(
        crf.marginals(padded, mask)[:, :3], crf.marginals(em, torch.ones(1, 3, dtype=torch.bool))
    )
    assert torch.allclose(
        crf.log_partition(padded, mask), crf.log_partition(em, torch.ones(1, 3, dtype=torch.bool))
    )


def test_bio_constraints_forbid_invalid_transitions():
    start, trans = bio_constraints(LABELS)
    ix = {t: i for i, t in enumerate(LABELS)}
    assert start[ix["I-PER"]] == FORBIDDEN and start[ix["B-PER"]] == 0
    assert trans[ix["O"], ix["I-LOC"]] == FORBIDDEN
    assert trans[ix["B-PER"], ix["I-LOC"]] == FORBIDDEN
    assert trans[ix["B-PER"], ix["I-PER"]] == 0 and trans[ix["I-PER"], ix["I-PER"]] == 0
    # Even with emissions that favour I- tags everywhere, decoding yields valid BIO.
    crf = _crf(0, True)
    em = torch.zeros(1, 6, len(LABELS))
    em[..., ix["I-LOC"]] = 10.0
    path = [LABELS[i] for i in crf.decode(em, torch.ones(1, 6, dtype=torch.bool))[0]]
    assert path[0] != "I-LOC"
    for a, b in itertools.pairwise(path):
        assert not (b.startswith("I-") and a[2:] != b[2:])


def test_nll_is_positive_and_trains_toward_the_gold_path():
    crf = CRF(len(LABELS), LABELS, constrain=True)
    em = torch.zeros(2, 4, len(LABELS), requires_grad=True)
    gold = torch.tensor([[1, 2, 0, 3], [0, 3, 4, 0]])
    mask = torch.ones(2, 4, dtype=torch.bool)
    opt = torch.optim.Adam([em, *crf.parameters()], lr=0.3)
    first = None
    for _ in range(60):
        loss = crf.nll(em, gold, mask)
        value = float(loss.detach())
        first = first if first is not None else value
        assert value >= 0
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 10
    assert crf.decode(em.detach(), mask) == gold.tolist()
