"""The permissions scorer's text scans per turn: known ids and quoted passages in a prompt and an answer.

    .venv/bin/python benchmarks/bench_permissions.py [--docs 3,100,2000] [--words 80] [--runs 7]

A document set of ``--docs`` documents of ``--words`` random words each; a turn's prompt holds four of them
(as a retrieval step puts them there, with their ids), and its answer cites one id and quotes 12 words of one
document. Each turn the scorer finds the ids in both, the quoted passages in the prompt (the user's own words
left out) and in the answer: what it does beside its permission lookups. Printed per turn, the median of
``--runs`` rounds of 200 turns: evalgate's scans, and the regex definitions they replaced (one alternation of
every id; ``\\w+`` and a tuple per word position for the quotes), with the speed-up.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions
from evalgate.scorers.permissions import _IdFinder, _QuoteFinder


class RegexIds:
    def __init__(self, ids: list[str]):
        ordered = sorted(set(ids), key=len, reverse=True)
        self.pattern = re.compile(r"(?<![\w/.-])(?:" + "|".join(map(re.escape, ordered)) + r")(?![\w/-])")

    def find(self, text: str) -> list[str]:
        return list(dict.fromkeys(m.group(0) for m in self.pattern.finditer(text)))


class RegexQuotes:
    def __init__(self, index: dict[tuple[str, ...], frozenset[str]], n: int):
        self.index, self.n = index, n

    def _words(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.casefold())

    def runs(self, text: str) -> set[tuple[str, ...]]:
        words = self._words(text)
        return {tuple(words[i:i + self.n]) for i in range(len(words) - self.n + 1)}

    def quoted(self, text: str, skip: set[tuple[str, ...]] | None = None) -> list[frozenset[str]]:
        words = self._words(text)
        runs = (tuple(words[i:i + self.n]) for i in range(len(words) - self.n + 1))
        found = (self.index.get(run) for run in runs if not skip or run not in skip)
        return list({id(docs): docs for docs in found if docs}.values())


def per_turn(turn: Callable[[], Any], runs: int) -> float:
    for _ in range(20):
        turn()
    rounds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(200):
            turn()
        rounds.append((time.perf_counter() - t0) / 200 * 1e6)
    return statistics.median(rounds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="3,100,2000")
    ap.add_argument("--words", type=int, default=80)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print(versions.header(), flush=True)
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(5000)] + "the a refund order days policy shipping account".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(n)) + "."

    print(f"{'documents':>10}  {'prompt':>12}  {'evalgate':>10}  {'regex':>10}  speed-up")
    for n in (int(d) for d in args.docs.split(",")):
        docs = [(f"kb/section-{i}/doc-{i}", text(args.words)) for i in range(n)]
        prompt = ("You are a helpful assistant. Context:\n" + "\n".join(f"[{d}] {t}" for d, t in docs[:4])
                  + "\nAnswer the user.")
        answer = f"Per {docs[0][0]}, " + " ".join(docs[0][1].split()[:12]) + " and more. " + text(40)
        user = "refund my order 1234 please"
        ours_ids, ours_quotes = _IdFinder([d for d, _ in docs]), _QuoteFinder(docs, 8)
        ref_ids, ref_quotes = RegexIds([d for d, _ in docs]), RegexQuotes(ours_quotes.index, 8)

        def turn(ids: Any, quotes: Any) -> Callable[[], Any]:
            def one() -> Any:
                own = quotes.runs(user)
                return (ids.find(prompt), ids.find(answer), quotes.quoted(prompt, own), quotes.quoted(answer))
            return one

        ours, ref = turn(ours_ids, ours_quotes), turn(ref_ids, ref_quotes)
        assert ours() == ref(), "the scans disagree"
        a, b = per_turn(ours, args.runs), per_turn(ref, args.runs)
        print(f"{n:>10,}  {len(prompt):>7} chars  {a:>7.1f} µs  {b:>7.1f} µs  {b / a:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
