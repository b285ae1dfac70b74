"""A LiteLLM proxy config's `model_list` as slimgate `[[models]]` TOML (`slimgate config
from-litellm`).

Each deployment becomes one model: `openai/…` (and `hosted_vllm/…`) an OpenAI-compatible
upstream called directly, any other prefix a litellm provider. Secrets stay env-var names
(`os.environ/X` -> `X`); a key written into the YAML is never copied. What has no
equivalent (load balancing, wildcards, per-deployment rpm) is said in `# note:` lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

OPENAI_URL = "https://api.openai.com/v1"
OPENAI_COMPATIBLE = {"openai", "hosted_vllm", "openai_like", "text-completion-openai"}
ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


class LiteLLMConfigError(Exception):
    """The YAML has no `model_list` slimgate can read."""


@dataclass
class _Model:
    name: str
    provider: str
    model: str | None
    base_url: str | None
    api_key_env: str | None
    timeout_s: float | None = None
    max_retries: int | None = None
    fallbacks: list[str] = field(default_factory=list)


def _env_name(value: Any, what: str, notes: list[str], suggested: str) -> str | None:
    """The env var an `os.environ/X` value names; a literal secret is not copied."""
    if value is None:
        return None
    m = ENV_REF.fullmatch(str(value).strip())
    if m:
        return m.group(1)
    notes.append(f"{what} is written in the YAML itself: not copied; put it in the env var "
                 f"{suggested}")
    return suggested


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _model(entry: dict[str, Any], name: str, notes: list[str]) -> _Model:
    params = entry.get("litellm_params") or {}
    if not isinstance(params, dict) or not isinstance(params.get("model"), str):
        raise LiteLLMConfigError(f"model_list entry '{name}' has no litellm_params.model")
    prefix, _, rest = params["model"].partition("/")
    provider, upstream = (prefix, rest) if rest else ("openai", prefix)
    base = params.get("api_base") or params.get("base_url")
    if isinstance(base, str) and ENV_REF.fullmatch(base):
        notes.append(f"{name}: api_base comes from the env var {base.split('/', 1)[1]}; "
                     "slimgate needs the URL itself in base_url")
        base = None
    env = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_API_KEY"
    key_env = _env_name(params.get("api_key"), f"{name}: api_key", notes, env)
    if provider in OPENAI_COMPATIBLE:
        if base is None and provider != "openai":
            raise LiteLLMConfigError(f"model_list entry '{name}' ({params['model']}) has no "
                                     "api_base")
        provider, base = "openai", base or OPENAI_URL
        if key_env is None and base == OPENAI_URL:
            key_env = "OPENAI_API_KEY"  # what litellm itself would read
    if provider == "azure" and params.get("api_version"):
        notes.append(f"{name}: api_version {params['api_version']!r}: set AZURE_API_VERSION "
                     "(litellm reads it)")
    for unsupported in ("rpm", "tpm", "extra_headers", "headers"):
        if unsupported in params:
            notes.append(f"{name}: litellm_params.{unsupported} not copied ("
                         + ("slimgate limits per gateway key: [server.rate_limit])"
                            if unsupported in ("rpm", "tpm") else
                            "headers may hold secrets: add non-secret ones to `headers`)"))
    retries = _number(params.get("max_retries", params.get("num_retries")))
    return _Model(name=name, provider=provider, model=upstream if upstream != name else None,
                  base_url=base if isinstance(base, str) else None, api_key_env=key_env,
                  timeout_s=_number(params.get("timeout") or params.get("request_timeout")),
                  max_retries=min(10, int(retries)) if retries is not None else None)


def _fallbacks(data: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section in ("router_settings", "litellm_settings"):
        settings = data.get(section) or {}
        for rule in settings.get("fallbacks") or [] if isinstance(settings, dict) else []:
            if isinstance(rule, dict):
                for name, others in rule.items():
                    out.setdefault(str(name), [str(o) for o in others or []])
    return out


def from_litellm(data: Any) -> tuple[list[_Model], list[str]]:
    """The models of a parsed LiteLLM config, and notes on what did not carry over."""
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list):
        raise LiteLLMConfigError("no model_list: is this a LiteLLM proxy config?")
    notes: list[str] = []
    models: list[_Model] = []
    taken: dict[str, _Model] = {}
    for i, entry in enumerate(data["model_list"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            raise LiteLLMConfigError(f"model_list[{i}] has no model_name")
        name = entry["model_name"]
        if "*" in name:
            notes.append(f"model_name {name!r}: wildcard routes have no slimgate equivalent; "
                         "list the models clients use")
            continue
        first = taken.get(name)
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        model = _model(entry, unique, notes)
        if first is not None:  # LiteLLM balances deployments sharing a name; here: fallbacks
            first.fallbacks.append(unique)
            notes.append(f"{name}: LiteLLM load-balances its deployments; slimgate serves the "
                         f"first and falls back to '{unique}'")
        taken[unique] = model
        models.append(model)
    for name, others in _fallbacks(data).items():
        if name in taken:
            taken[name].fallbacks += [o for o in others if o in taken and o != name
                                      and o not in taken[name].fallbacks]
    master = ((data.get("general_settings") or {}).get("master_key")
              if isinstance(data.get("general_settings"), dict) else None)
    if master is not None:
        notes.append("general_settings.master_key: slimgate's gateway keys are the "
                     "comma-separated keys in SLIMGATE_API_KEYS (server.api_keys_env), admin "
                     "keys in SLIMGATE_ADMIN_KEYS; LiteLLM's virtual keys are not carried over")
    if not models:
        raise LiteLLMConfigError("model_list has no model slimgate can serve")
    return models, notes


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or list of strings is a TOML basic value


def render_toml(models: list[_Model], notes: list[str], source: str) -> str:
    lines = [f"# [[models]] from the LiteLLM config {source} (slimgate config from-litellm).",
             "# Add [server], [store] and [distill] as in config.example.toml."]
    lines += [f"# note: {n}" for n in notes]
    for m in models:
        lines += ["", "[[models]]", f"name = {_toml(m.name)}", f"provider = {_toml(m.provider)}"]
        if m.model is not None:
            lines.append(f"model = {_toml(m.model)}")
        if m.base_url is not None:
            lines.append(f"base_url = {_toml(m.base_url)}")
        if m.api_key_env is not None:
            lines.append(f"api_key_env = {_toml(m.api_key_env)}")
        if m.timeout_s is not None and m.timeout_s > 0:
            lines.append(f"timeout_s = {m.timeout_s!r}")
        if m.max_retries is not None and m.max_retries >= 0:
            lines.append(f"max_retries = {m.max_retries}")
        if m.fallbacks:
            lines.append(f"fallbacks = {_toml(m.fallbacks)}")
    return "\n".join(lines) + "\n"
