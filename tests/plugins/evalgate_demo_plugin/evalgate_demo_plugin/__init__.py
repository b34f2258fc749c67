"""A demo scorer plugin: registered with evalgate's decorator, shipped as its own package."""

from evalgate import Score, scorer


@scorer("courtesy", help="the answer says please or thanks the user", stats=("words",))
def courtesy(min_words: int = 1):
    """Counts courtesy words in the answer (an async check)."""

    async def check(ctx):
        text = (ctx.trace.output or "").lower()
        n = sum(text.count(w) for w in ("please", "thank"))
        return Score(n >= min_words, float(n), f"{n} courtesy word(s)", metrics={"words": float(n)})

    return check
