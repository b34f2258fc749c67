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


@scorer("dwell", help="passes after waiting a while (a sync check that may take longer than the turn may)")
def dwell(seconds: float = 0.0):
    """Sleeps, then passes: a plugin whose sync check can hang."""
    import time

    def check(ctx):
        time.sleep(seconds)
        return Score(True, seconds, f"waited {seconds:g}s")

    return check


# --- a target kind: a suite names it as target: {echo: PREFIX} -----------------------------

from pydantic import BaseModel, ConfigDict  # noqa: E402

from evalgate.targets import Reply, target  # noqa: E402


class EchoSpec(BaseModel):
    """What a suite writes: target: {echo: "you said: ", upper: false}."""

    model_config = ConfigDict(extra="forbid")
    echo: str
    upper: bool = False


class EchoTarget:
    def __init__(self, prefix: str, upper: bool):
        self.prefix, self.upper = prefix, upper

    async def start(self) -> None:
        pass

    async def call(self, request, turn, timeout_s):
        text = self.prefix + request["input"]
        return Reply({"output": text.upper() if self.upper else text, "route": {"name": "echo"}}, 0.1)

    async def close(self) -> None:
        pass


@target("echo", spec=EchoSpec, help="answers with what it was told, after a prefix")
def echo(config, ctx):
    return EchoTarget(config.spec["echo"], config.spec["upper"])
