"""Context assembly: BM25 retrieval, permissions, threshold, top-k and a token budget.

The order matters and is fixed: documents are ranked by BM25 (``bm25s``),
then those the user may not read are dropped (``permission``) before
anything else looks at them, then those scoring under the route's threshold
(``threshold``), those past its top-k (``rank``), and finally the
lowest-ranked documents that do not fit the token budget (``budget``).
Every document that matched the query is recorded, used or not, with why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..documents import Document, DocumentSet, Permissions
from ..traces import User
from .tokens import TokenCounter

_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s's own default token pattern


@dataclass(frozen=True, slots=True)
class Candidate:
    """One document that matched the query, and what became of it."""

    doc: Document
    score: float
    rank: int
    tokens: int
    excluded: str | None
    """None when used; else permission, threshold, rank or budget."""

    def item(self) -> dict[str, Any]:
        """The trace's context item."""
        return {"id": self.doc.id, "title": self.doc.title, "score": round(self.score, 4), "rank": self.rank,
                "groups": list(self.doc.groups), "tokens": self.tokens, "used": self.excluded is None,
                "excluded": self.excluded}


class Retriever:
    """A BM25 index over one document set (title and text), built once."""

    def __init__(self, documents: DocumentSet, permissions: Permissions, counter: TokenCounter):
        import bm25s

        self.docs = list(documents)
        self.permissions = permissions
        self.counter = counter
        self._stemmer = _stemmer()
        corpus = [f"{d.title}\n{d.text}" for d in self.docs]
        tokens = bm25s.tokenize(corpus, stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._index = bm25s.BM25()
        self._index.index(tokens, show_progress=False)
        self._vocab = set(tokens.vocab)
        self._stopwords = frozenset(bm25s.stopwords.STOPWORDS_EN)
        self._tokens = [counter.count(d.text) for d in self.docs]

    def _query_tokens(self, query: str) -> list[str]:
        words = [w for w in _TOKEN.findall(query.lower()) if w not in self._stopwords]
        if self._stemmer is not None:
            words = self._stemmer.stemWords(words)
        return [w for w in dict.fromkeys(words) if w in self._vocab]

    def scores(self, query: str) -> list[tuple[float, Document, int]]:
        """(score, document, tokens) for every document with a positive score, best first (ties by id)."""
        terms = self._query_tokens(query)
        if not terms:
            return []
        raw = self._index.get_scores(terms)
        hits = [(float(raw[i]), self.docs[i], self._tokens[i]) for i in range(len(self.docs)) if raw[i] > 0]
        hits.sort(key=lambda h: (-h[0], h[1].id))
        return hits

    def best_readable(self, query: str, user: User) -> float:
        """The best score among documents the user may read (0 when none matched)."""
        for score, doc, _ in self.scores(query):
            if self.permissions.may_read(user, doc.id) is True:
                return score
        return 0.0

    def assemble(self, query: str, user: User, *, top_k: int, min_score: float,
                 max_tokens: int | None) -> list[Candidate]:
        """Rank, then filter by permission, threshold, top-k and budget, in that order."""
        out: list[Candidate] = []
        used = spent = 0
        over_budget = False
        for rank, (score, doc, tokens) in enumerate(self.scores(query), 1):
            excluded: str | None = None
            if self.permissions.may_read(user, doc.id) is not True:  # unknown to the truth: not readable
                excluded = "permission"
            elif score < min_score:
                excluded = "threshold"
            elif used >= top_k:
                excluded = "rank"
            elif over_budget or (max_tokens is not None and spent + tokens > max_tokens):
                over_budget = True  # trim from the bottom: nothing ranked lower gets in either
                excluded = "budget"
            else:
                used += 1
                spent += tokens
            out.append(Candidate(doc, score, rank, tokens, excluded))
        return out


def _stemmer() -> Any:
    """PyStemmer's English stemmer when installed (optional), else none."""
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer("english")
