"""Backend for every non-OpenAI provider (Anthropic, Bedrock, Gemini, ...) through litellm.

litellm translates OpenAI-format requests to the provider's API and its answers back,
streaming included. It is imported on first use so `slimgate --help` stays fast; its own
retries are off because the gateway retries (one policy, one set of metrics). Only OpenAI
request parameters (and the model's `extra_body_fields`) from the body reach litellm: the
destination, headers and credentials are the config's alone (see `gateway.upstream.params`).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import AsyncIterator
from typing import Any

import openai

from gateway.config import Config, ConfigError
from gateway.litellm_module import import_litellm
from gateway.upstream.base import Endpoint, UpstreamFailure, failure_from_status
from gateway.upstream.params import check_extra_fields, litellm_body

log = logging.getLogger("slimgate.upstream")


def check_litellm_models(config: Config) -> None:
    """The config's litellm models, against litellm itself (at start, where litellm is
    imported anyway, so a mistake fails the start, not a request): every non-OpenAI
    `[[models]].provider` is one litellm knows, and no `extra_body_fields` entry is a name
    litellm reads as a call option (`gateway.upstream.params.check_extra_fields`)."""
    litellm = import_litellm()
    known = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    for i, m in enumerate(config.models):
        if m.provider == "openai":
            continue
        if m.provider not in known:
            close = difflib.get_close_matches(m.provider, sorted(known), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(f"models[{i}].provider: {m.provider!r} is not a provider litellm "
                              f"knows{hint}; use 'openai' for any OpenAI-compatible base_url")
        try:
            check_extra_fields(m.name, m.extra_body_fields)
        except ValueError as e:
            raise ConfigError(f"models[{i}].extra_body_fields: {e}") from None


def _failure(e: Exception) -> UpstreamFailure:
    if isinstance(e, openai.APITimeoutError):
        return UpstreamFailure("timeout", "provider did not answer in time")
    if isinstance(e, openai.APIConnectionError):
        return UpstreamFailure("connect", "could not reach the provider")
    log.debug("provider call failed: %s", _short(e))  # the raw text: debug log only
    if isinstance(e, openai.APIStatusError):
        retry_after = e.response.headers.get("retry-after") if e.response is not None else None
        f = failure_from_status(e.status_code, b"", retry_after)
        client_fault = 400 <= e.status_code < 500 and f.kind == "client"
        # The provider's words only for the client's own mistakes (see failure_from_status).
        f.message = (f"provider answered HTTP {e.status_code}: {_short(e)}" if client_fault
                     else f"provider answered HTTP {e.status_code}")
        return f
    if isinstance(e, openai.APIError):
        return UpstreamFailure("server", f"provider error ({type(e).__name__})")
    return UpstreamFailure("malformed",
                           f"could not translate the provider's answer ({type(e).__name__})")


def _short(e: Exception) -> str:
    text = str(getattr(e, "message", None) or e)
    return text[:300]


class LiteLLMBackend:
    def __init__(
        self,
        name: str,
        provider: str,
        upstream_model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        extra_headers: dict[str, str] | None = None,
        extra_body_fields: list[str] | None = None,
    ) -> None:
        self.name = name
        self._extra = frozenset(extra_body_fields or ())
        prefix = f"{provider}/"
        with_prefix = upstream_model.startswith(prefix)
        self._model = upstream_model if with_prefix else prefix + upstream_model
        self._opts: dict[str, Any] = {"timeout": timeout_s, "num_retries": 0}
        if base_url:
            self._opts["api_base"] = base_url
        if api_key:
            self._opts["api_key"] = api_key
        if extra_headers:
            self._opts["extra_headers"] = extra_headers
        self._litellm = import_litellm()

    def call_kwargs(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        """litellm's keyword arguments: allowed body fields, then the config's options."""
        return {**litellm_body(endpoint, body, self._extra), **self._opts, "model": self._model}

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint == "responses":  # the config sends these models translated requests
            raise UpstreamFailure("client", "litellm models serve /v1/responses by "
                                  "translation only", status=400)
        fn = {
            "chat/completions": self._litellm.acompletion,
            "completions": self._litellm.atext_completion,
            "embeddings": self._litellm.aembedding,
        }[endpoint]
        kwargs = self.call_kwargs(endpoint, body)
        kwargs.pop("stream", None)
        kwargs.pop("stream_options", None)
        try:
            resp = await fn(**kwargs)
        except Exception as e:  # litellm raises openai-typed errors; anything else is a bug there
            raise _failure(e) from None
        data: dict[str, Any] = resp.model_dump()
        data.pop("_hidden_params", None)
        return data

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        if endpoint in ("embeddings", "responses"):
            raise UpstreamFailure("client", f"{endpoint} cannot be streamed here", status=400)
        fn = self._litellm.acompletion if endpoint == "chat/completions" else (
            self._litellm.atext_completion
        )
        try:
            resp = await fn(**{**self.call_kwargs(endpoint, body), "stream": True})
            async for chunk in resp:
                yield chunk.model_dump(exclude_none=True)
        except UpstreamFailure:
            raise
        except Exception as e:
            raise _failure(e) from None

    async def aclose(self) -> None:
        """litellm pools its own clients per process; nothing to close per backend."""
