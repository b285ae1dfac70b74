"""Which request body fields may reach an upstream: the OpenAI parameters, nothing that steers.

A client's body is data for the model, never instructions for the gateway's own HTTP
client. For litellm backends only the OpenAI request parameters pass (derived from the
wire models in `gateway.protocol`) plus the provider-specific fields the operator enables
per model (`extra_body_fields`); the destination, headers and credentials come from the
config alone. The direct OpenAI-compatible path forwards unknown fields (vLLM's `top_k`,
`guided_json`), minus every name litellm or the OpenAI SDK read as call options, so an
OpenAI-compatible proxy upstream (a LiteLLM proxy) cannot be steered either.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.protocol.responses import ResponsesRequest
from gateway.upstream.base import Endpoint

# slimgate-only or litellm-only meaning; handled by the gateway, never sent to a provider.
_NOT_FORWARDED_TO_LITELLM = frozenset({"metadata"})


def _fields(model: Any) -> frozenset[str]:
    return frozenset(f.alias or name for name, f in model.model_fields.items())


_PROTOCOL: dict[str, frozenset[str]] = {
    "chat/completions": _fields(ChatCompletionRequest),
    "completions": _fields(CompletionRequest),
    "embeddings": _fields(EmbeddingRequest),
}
OPENAI_PARAMS: dict[str, frozenset[str]] = {
    endpoint: names - _NOT_FORWARDED_TO_LITELLM for endpoint, names in _PROTOCOL.items()
}
# Native /v1/responses bodies go to the direct path: their parameters are OpenAI's too.
_ALL_OPENAI: frozenset[str] = frozenset().union(*_PROTOCOL.values(), _fields(ResponsesRequest))

# Call options of the OpenAI SDK and of HTTP clients in general: never body fields.
SDK_OPTIONS = frozenset({
    "api_key", "api_base", "base_url", "api_version", "api_type", "organization", "project",
    "headers", "extra_headers", "extra_query", "extra_body", "timeout", "request_timeout",
    "max_retries", "num_retries", "http_client", "default_headers", "default_query",
    "azure_ad_token", "azure_endpoint", "deployment_id", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_region_name", "vertex_credentials",
    "vertex_project", "vertex_location",
})
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@lru_cache(maxsize=1)
def litellm_control_names() -> frozenset[str]:
    """Every keyword litellm reads as its own (routing, credentials, mocks, callbacks) that
    is not an OpenAI request parameter. Read from litellm itself, so new ones are covered."""
    import inspect

    from gateway.litellm_module import import_litellm

    litellm = import_litellm()
    from litellm.types.utils import all_litellm_params

    names = set(all_litellm_params) | set(inspect.signature(litellm.completion).parameters)
    return frozenset((names | SDK_OPTIONS) - _ALL_OPENAI - {"kwargs", "args", "self"})


def check_extra_fields(model: str, fields: list[str]) -> None:
    """ValueError naming the first operator-enabled field that would steer litellm."""
    for name in fields:
        if not FIELD_NAME.fullmatch(name):
            raise ValueError(f"model '{model}': extra_body_fields entry {name!r} is not a "
                             "field name (letters, digits, '_')")
        if name in _ALL_OPENAI:
            raise ValueError(f"model '{model}': extra_body_fields entry '{name}' is an OpenAI "
                             "parameter and is forwarded already")
        if name in SDK_OPTIONS or name in litellm_control_names():
            raise ValueError(
                f"model '{model}': extra_body_fields may not name '{name}': litellm reads "
                "it as a call option (destination, credentials or behaviour), not a model "
                "parameter")


def litellm_body(endpoint: Endpoint, body: dict[str, Any], extra: frozenset[str]) -> dict[str, Any]:
    """The body fields a litellm call receives: OpenAI parameters and enabled extras."""
    allowed = OPENAI_PARAMS[endpoint]
    return {k: v for k, v in body.items() if k in allowed or k in extra}


def direct_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body for an OpenAI-compatible upstream: the client's fields minus call options."""
    control = litellm_control_names()
    if not any(k in control for k in body):
        return body
    return {k: v for k, v in body.items() if k not in control}
