"""Security: no request body field can choose where an upstream call goes or with what key.

An attacker holding one ordinary gateway key sends litellm's own parameters (`base_url`,
`api_base`, `api_key`, `extra_headers`, `mock_response`, ...) and expects the provider key
to go to their host, or a made-up "teacher" answer to be recorded. Both backends are
checked against a second loopback server playing the attacker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, parse_config
from gateway.upstream.params import litellm_control_names
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client

PROVIDER_KEY = "sk-provider-secret-123"


@pytest.fixture(scope="module")
def attacker() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def _config(tmp_path: Path, upstream: FakeUpstream, **model: Any) -> Any:
    cfg = gateway_config(tmp_path, upstream)
    data = cfg.model_dump()
    data["models"].append({
        "name": "claude-test", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
        "base_url": upstream.root_url, "api_key_env": "SLIMGATE_TEST_PROVIDER_KEY",
        "max_retries": 0, **model,
    })
    return parse_config(data)


def _hostile(attacker: FakeUpstream) -> dict[str, Any]:
    return {
        "base_url": attacker.root_url, "api_base": attacker.root_url,
        "api_key": "sk-attacker", "extra_headers": {"x-api-key": "sk-attacker"},
        "headers": {"x-api-key": "sk-attacker"}, "extra_body": {"api_base": attacker.root_url},
        "mock_response": "I am a made-up teacher answer", "model_list": [],
        "fallbacks": [{"model": "openai/x", "api_base": attacker.base_url}],
        "custom_llm_provider": "openai", "metadata": {"model_info": {"id": "x"}},
    }


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
async def test_body_cannot_redirect_the_upstream_or_swap_the_answer(
    tmp_path: Path, fresh_upstream: FakeUpstream, attacker: FakeUpstream, keys: str, model: str,
) -> None:
    attacker.requests.clear()
    async with running_client(_config(tmp_path, fresh_upstream)) as client:
        client.headers["authorization"] = f"Bearer {keys}"
        body = {"model": model, "max_tokens": 20,
                "messages": [{"role": "user", "content": "hello"}], **_hostile(attacker)}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "echo: hello"  # not the mock
        r = await client.post("/v1/chat/completions", json={**body, "stream": True})
        assert r.status_code == 200 and "echo" in r.text and "made-up" not in r.text
    assert attacker.requests == []  # nothing reached the attacker's host
    assert fresh_upstream.requests, "the configured upstream answered"
    for headers in fresh_upstream.headers:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert "sk-attacker" not in str(lowered)
        assert PROVIDER_KEY in (lowered.get("x-api-key", ""), lowered.get("authorization", "")[7:])
    for sent in fresh_upstream.requests:
        assert not {"base_url", "api_base", "api_key", "extra_headers", "mock_response",
                    "fallbacks", "model_list", "extra_body", "custom_llm_provider"} & set(sent)


async def test_operator_enabled_extra_fields_reach_litellm_providers(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = _config(tmp_path, fresh_upstream, extra_body_fields=["top_k"])
    async with running_client(cfg) as client:
        client.headers["authorization"] = f"Bearer {keys}"
        body = {"model": "claude-test", "max_tokens": 20, "top_k": 5, "not_enabled": 1,
                "messages": [{"role": "user", "content": "hi"}]}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
    sent = fresh_upstream.requests[-1]
    assert sent.get("top_k") == 5 and "not_enabled" not in sent


@pytest.mark.parametrize("name", ["api_base", "base_url", "mock_response", "extra_headers",
                                  "api_key", "bad name"])
def test_start_refuses_control_names_as_extra_body_fields(tmp_path: Path, name: str) -> None:
    from gateway.upstream.litellm_backend import check_litellm_models

    data = {"models": [{"name": "c", "provider": "anthropic", "extra_body_fields": [name]}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.extra_body_fields"):
        check_litellm_models(parse_config(data))  # serve and the app's lifespan run it


async def test_an_app_with_a_steering_extra_field_does_not_start(tmp_path: Path,
                                                                  fresh_upstream: FakeUpstream
                                                                  ) -> None:
    cfg = _config(tmp_path, fresh_upstream, extra_body_fields=["api_base"])
    with pytest.raises(ConfigError, match="api_base"):
        async with running_client(cfg):
            pass


_names = st.sampled_from(sorted(litellm_control_names()) + ["base_url", "extra_headers"])
_values = st.one_of(st.text(max_size=20), st.integers(), st.just({"x-api-key": "sk-attacker"}),
                    st.just("http://attacker.invalid/"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.dictionaries(_names, _values, max_size=6))
def test_no_body_field_changes_url_headers_or_credentials(extra: dict[str, Any]) -> None:
    """Property: whatever litellm/SDK control fields a body adds, the call's destination,
    headers and credentials are the config's, and no control field reaches the provider."""
    import aiohttp

    from gateway.upstream.litellm_backend import LiteLLMBackend
    from gateway.upstream.openai_http import OpenAIHTTPBackend

    lite = LiteLLMBackend("c", "anthropic", "claude-x", base_url="http://cfg.invalid",
                          api_key="sk-cfg", timeout_s=5)
    body = {"model": "c", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5,
            **extra}
    kwargs = lite.call_kwargs("chat/completions", body)
    assert kwargs["api_base"] == "http://cfg.invalid" and kwargs["api_key"] == "sk-cfg"
    assert kwargs["model"] == "anthropic/claude-x" and kwargs["temperature"] == 0.5
    assert not (set(kwargs) - {"messages", "temperature", "model", "api_base", "api_key",
                               "timeout", "num_retries"})
    session = object.__new__(aiohttp.ClientSession)  # never used to send
    direct = OpenAIHTTPBackend("g", "http://cfg.invalid/v1", session, upstream_model="m",
                               api_key="sk-cfg", extra_headers={"x-team": "a"})
    payload = direct.payload(body)
    assert payload["model"] == "m" and payload["temperature"] == 0.5
    assert not set(extra) & set(payload)
    assert direct.headers == {"content-type": "application/json", "x-team": "a",
                              "authorization": "Bearer sk-cfg"}
