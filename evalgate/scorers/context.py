"""Context scorers: did the right documents reach the model, ranked well, and within budget?

``context`` checks document ids: must_include / must_exclude, and the
standard rank metrics against the case's relevance judgements. The
ranking is the turn's context items that were used (``used: true``), or
every retrieved item with ``ranking: retrieved``, in ``rank`` order when
every item gives one, else in the order the trace lists them.

With ``rel(d)`` the grade of document d (a list of ids means grade 1 each;
grade 0 or an unlisted id is not relevant), ``R`` the relevant documents
and ``r_1 … r_n`` the ranking:

    hit@k        1 if some relevant document is in the top k, else 0
    precision@k  |relevant documents in the top k| / k
    recall@k     |relevant documents in the top k| / |R|
    rr (mrr)     1 / the position of the first relevant document (0 if none); its mean over turns is MRR
    DCG@k        Σ_{i=1..k} rel(r_i) / log2(i + 1)       (linear gain, as trec_eval's ndcg_cut)
    nDCG@k       DCG@k / IDCG@k, IDCG@k the DCG@k of the grades sorted from high to low

Two choices the definitions leave open:

- **Fewer than k results**: the missing positions count as not relevant, so
  precision@k still divides by k (3 results, 1 relevant: precision@5 = 1/5).
- **Duplicate ids**: a repeated document keeps its position (it took a slot
  in the context) but gains nothing the second time: it is counted once in
  hit, precision, recall and DCG, and never as a later first relevant hit.

When ``R`` is empty, recall, nDCG, hit and rr are undefined: they are not
reported (the run mean leaves the turn out), and thresholds on them are
not checked; precision@k is 0 (nothing retrieved can be relevant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from . import Check, Score, ScoreContext, scorer

RANK_METRICS = ("hit", "precision", "recall", "ndcg", "mrr")
REPORTED_K = (1, 3, 5, 10)


def _ids(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@dataclass(frozen=True)
class RankMetrics:
    """The rank metrics of one ranking at one cutoff k (None: undefined, no relevant documents)."""

    k: int
    hit: float | None
    precision: float
    recall: float | None
    ndcg: float | None
    rr: float | None
    found: tuple[str, ...]
    """Relevant documents in the top k, in rank order."""


def grades_of(relevant: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """Relevance grades by id: a list means grade 1 for each; grades ≤ 0 are dropped (not relevant)."""
    if isinstance(relevant, Mapping):
        return {str(d): float(g) for d, g in relevant.items() if float(g) > 0}
    return {str(d): 1.0 for d in relevant}


def dcg(gains: Sequence[float]) -> float:
    """Σ gain_i / log2(i + 1) over positions i = 1, 2, …"""
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, 1))


def rank_metrics(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> RankMetrics:
    """hit@k, precision@k, recall@k, nDCG@k and the reciprocal rank of one ranking (see the module doc)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    seen: set[str] = set()
    gains: list[float] = []  # per position, 0 for repeats and non-relevant ids
    first_hit: int | None = None
    for pos, doc in enumerate(ranking, 1):
        gain = grades.get(doc, 0.0) if doc not in seen else 0.0
        seen.add(doc)
        gains.append(gain)
        if gain > 0 and first_hit is None:
            first_hit = pos
    top = gains[:k]
    found = tuple(d for d, g in zip(ranking[:k], top) if g > 0)
    n_rel = len(grades)
    precision = len(found) / k
    if n_rel == 0:
        return RankMetrics(k, None, precision, None, None, None, found)
    ideal = dcg(sorted(grades.values(), reverse=True)[:k])
    return RankMetrics(k, 1.0 if found else 0.0, precision, len(found) / n_rel, dcg(top) / ideal,
                       1.0 / first_hit if first_hit else 0.0, found)


def ranking_of(ctx: ScoreContext, which: str) -> list[str]:
    """The ids the turn ranked: used items (or all retrieved), by ``rank`` when every item has one."""
    items = [c for c in ctx.trace.context if which == "retrieved" or c.used]
    if items and all(c.rank is not None for c in items):
        items = sorted(items, key=lambda c: c.rank)  # type: ignore[arg-type,return-value]
    return [c.id for c in items]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


@scorer("context", shorthand="must_include",
        help="documents that must (not) be used; recall/precision/nDCG/MRR/hit@k against relevant ids",
        stats=("recall@k", "precision@k", "ndcg@k", "hit@k", "mrr"))
def context(must_include: str | list[str] | None = None, must_exclude: str | list[str] | None = None,
            relevant: list[str] | dict[str, float] | None = None, k: int = 5,
            min: dict[str, float] | None = None,  # noqa: A002 - reads as YAML: min: {recall: 0.8}
            ranking: Literal["used", "retrieved"] = "used") -> Check:
    """Check the ids of the documents the turn used, and rank metrics against ``relevant``.

    must_include: every id must be used; must_exclude: none may be.
    relevant: ids (grade 1) or ids → grades; k: the cutoff (default 5);
    min: thresholds at k on recall, precision, ndcg, hit, mrr (default
    ``{recall: 1}``: every relevant document in the top k). Reports
    recall@k, precision@k, ndcg@k, hit@k for k in 1, 3, 5, 10 and the
    given k, and mrr, as run metrics ``context.<name>``.
    """
    need, forbid = _ids(must_include), _ids(must_exclude)
    if not need and not forbid and relevant is None:
        raise ValueError("give must_include, must_exclude and/or relevant (document ids)")
    if k < 1:
        raise ValueError("k must be at least 1")
    grades = grades_of(relevant) if relevant is not None else None
    thresholds = dict(min) if min is not None else ({"recall": 1.0} if grades is not None else {})
    for name, limit in thresholds.items():
        if name not in RANK_METRICS:
            raise ValueError(f"min: unknown metric '{name}'; use {', '.join(RANK_METRICS)}")
        if not 0 <= limit <= 1:
            raise ValueError(f"min: {name} is a share between 0 and 1")
    if thresholds and grades is None:
        raise ValueError("min needs relevant: the documents that should be retrieved")
    cutoffs = sorted({*REPORTED_K, k})

    def check(ctx: ScoreContext) -> Score:
        used = set(ctx.trace.used_context_ids)
        problems = []
        missing = [d for d in need if d not in used]
        leaked = [d for d in forbid if d in used]
        if missing:
            problems.append("missing " + ", ".join(missing))
        if leaked:
            problems.append("must not use " + ", ".join(leaked))
        if grades is None:
            total = len(need) + len(forbid)
            if problems:
                return Score(False, 1 - (len(missing) + len(leaked)) / total, "; ".join(problems))
            return Score(True, 1.0, f"{len(used)} document(s) used; {len(need)} required present, "
                                    f"{len(forbid)} forbidden absent")
        ranked = ranking_of(ctx, ranking)
        metrics: dict[str, float] = {}
        at_k: RankMetrics | None = None
        for cut in cutoffs:
            m = rank_metrics(ranked, grades, cut)
            at_k = m if cut == k else at_k
            for name in ("hit", "precision", "recall", "ndcg"):
                v = getattr(m, name)
                if v is not None:
                    metrics[f"{name}@{cut}"] = v
            if m.rr is not None:
                metrics["mrr"] = m.rr
        assert at_k is not None
        values = {"hit": at_k.hit, "precision": at_k.precision, "recall": at_k.recall, "ndcg": at_k.ndcg,
                  "mrr": at_k.rr}
        for name, limit in thresholds.items():
            v = values[name]
            if v is not None and v < limit:
                problems.append(f"{name}@{k} {_fmt(v)} < {limit:g}" if name != "mrr" else f"rr {_fmt(v)} < {limit:g}")
        summary = (f"recall@{k} {_fmt(at_k.recall)}, precision@{k} {_fmt(at_k.precision)}, "
                   f"nDCG@{k} {_fmt(at_k.ndcg)}, rr {_fmt(at_k.rr)} over {len(ranked)} ranked")
        if not grades:
            summary += " (no relevant documents: recall, nDCG and rr undefined)"
        value = at_k.recall if at_k.recall is not None else at_k.precision
        detail = {"ranking": ranked[:50], "found": list(at_k.found)}
        if problems:
            return Score(False, value, "; ".join(problems) + f" ({summary})", metrics=metrics, detail=detail)
        return Score(True, value, summary, metrics=metrics, detail=detail)

    return check
