"""The `[telemetry]` table: where spans go and how they are batched (strict, like the rest).

Kept apart from `gateway/config.py` so the telemetry package holds all of its own settings;
it imports nothing but pydantic, so loading the config never loads the exporter.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _otlp_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value if parts.path.strip("/") else value.rstrip("/") + "/v1/traces"


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # OTLP/HTTP traces endpoint: a collector's base URL (http://collector:4318, /v1/traces is
    # added) or the full traces URL. Unset: no spans, nothing on the request path.
    otlp_endpoint: Annotated[str | None, AfterValidator(_otlp_url)] = None
    protocol: Literal["http/protobuf", "http/json"] = "http/protobuf"
    headers_env: str | None = None  # env var with "k=v,k2=v2" export headers (auth tokens)
    service_name: str = Field("slimgate", min_length=1)  # resource attribute service.name
    queue_size: int = Field(4096, ge=1)  # spans waiting to be sent; past it they are dropped
    batch_size: int = Field(512, ge=1)  # spans per export request
    interval_s: float = Field(2.0, gt=0)  # longest a span waits for its batch
    timeout_s: float = Field(10.0, gt=0)  # per export request
