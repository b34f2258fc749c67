"""The pipeline target: evalgate's own reference pipeline, configured in YAML."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .base import Reply, StopRun, TargetContext, TargetError, target
from .spec import PipelineTargetSpec, TargetConfig


@target("pipeline", spec=PipelineTargetSpec)
def pipeline_target(config: TargetConfig, ctx: TargetContext) -> PipelineTarget:
    """evalgate's reference pipeline: router, context assembly, a model step."""
    return PipelineTarget(config.spec["pipeline"], documents=ctx.documents, permissions=ctx.permissions,
                          models=ctx.models, concurrency=ctx.concurrency)

OFFLINE_HINT = ("record it: run once without --offline with the endpoint reachable (the answers go to the cache), "
                "then 'evalgate cache export FILE' and commit FILE; CI loads it with 'evalgate cache import FILE'")


class PipelineTarget:
    """Runs each turn through a :class:`~evalgate.pipeline.Pipeline` in this process."""

    def __init__(self, spec: dict[str, Any], *, documents: Any = None, permissions: Any = None,
                 models: Any = None, concurrency: int = 8):
        self.spec_data = spec
        self.documents = documents
        self.permissions = permissions
        self.models = models
        self.concurrency = concurrency
        self.pipeline: Any = None
        self._client: Any = None
        self._cache: Any = None

    async def start(self) -> None:
        from ..documents import DocumentSet
        from ..models.client import ModelOptions
        from ..pipeline import Pipeline, PipelineSpec

        spec = PipelineSpec.model_validate(self.spec_data)
        documents, permissions = self.documents, self.permissions
        if spec.documents is not None:
            documents = DocumentSet.load(Path(spec.documents))
            if self.documents is not None:
                permissions = None  # the suite's truth covers the suite's set; here the pipeline's own groups decide
        options = self.models or ModelOptions()
        if spec.endpoint is not None:
            from ..models import ModelClient, ResponseCache

            if options.cache_mode != "off" and options.cache_path is not None:
                self._cache = ResponseCache(options.cache_path)
            from .http import expand_env

            # offline makes no call, so a header's variable need not be set
            headers = {} if options.offline else {
                k: expand_env(v, f"the pipeline endpoint's header {k}") for k, v in spec.endpoint.headers.items()}
            self._client = ModelClient(spec.endpoint.base_url, api_key_env=spec.endpoint.api_key_env,
                                       concurrency=options.concurrency or self.concurrency,
                                       timeout_s=spec.endpoint.timeout_s, max_retries=spec.endpoint.max_retries,
                                       cache=self._cache, cache_mode=options.cache_mode, offline=options.offline,
                                       headers=headers)
        self.pipeline = Pipeline(spec, documents, permissions, client=self._client, max_cost=options.max_cost,
                                 meter=options.meter)

    async def call(self, request: dict[str, Any], turn: Any, timeout_s: float) -> Reply:
        try:
            trace = await asyncio.wait_for(self.pipeline.turn(request), timeout_s)
        except asyncio.TimeoutError:
            raise TargetError(f"timed out after {timeout_s:g}s") from None
        except StopRun as exc:  # the run stops here: say at which turn, and how to go on
            where = f"case {request.get('case_id')} turn {request.get('turn')}"
            message = str(exc)
            if message.startswith("offline"):
                raise StopRun(f"{where}: {message}; {OFFLINE_HINT}") from None
            raise StopRun(f"{where}: {message}") from None
        # the turn's own measure (latency_ms.total, taken inside the turn, without evalgate's time around each model
        # exchange) less the time queued for a model-call slot: this call's wall time would add the event loop's lag
        # in starting the turn and in resuming here after it, which is evalgate's, not the system's
        extra = trace.get("extra", {}).get("pipeline", {})
        total = float(trace["latency_ms"]["total"])
        return Reply(trace, max(0.0, total - float(extra.get("queued_ms") or 0.0)))

    @property
    def spent_usd(self) -> float:
        return self.pipeline.meter.spent if self.pipeline is not None else 0.0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._cache is not None:
            self._cache.close()
