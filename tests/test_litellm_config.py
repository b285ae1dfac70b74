"""`slimgate config from-litellm`: a LiteLLM proxy's model_list as [[models]] that load, with
secrets kept as env-var names (issue 23, the Migrating page)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config

LITELLM = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
      timeout: 30
  - model_name: support-bot
    litellm_params:
      model: openai/ft:gpt-4o-mini-2024-07-18:acme::AbC123
      api_key: os.environ/OPENAI_API_KEY
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku-20241022
      api_key: os.environ/ANTHROPIC_API_KEY
      max_retries: 3
  - model_name: local
    litellm_params:
      model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
      api_base: http://vllm:8000/v1
  - model_name: gpt-4o
    litellm_params:
      model: azure/gpt4o-eu
      api_base: https://acme.openai.azure.com
      api_key: sk-written-in-the-file-123456
      api_version: "2024-06-01"
      rpm: 600
  - model_name: "anthropic/*"
    litellm_params:
      model: "anthropic/*"
router_settings:
  fallbacks: [{"gpt-4o": ["claude"]}]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def convert(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str = LITELLM
            ) -> tuple[int, str, str]:
    path = tmp_path / "litellm.yaml"
    path.write_text(text)
    code = main(["config", "from-litellm", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_model_list_becomes_models_that_load(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = convert(tmp_path, capsys)
    assert code == 0
    models = {m.name: m for m in parse_config(tomllib.loads(out)).models}
    assert list(models) == ["gpt-4o", "support-bot", "claude", "local", "gpt-4o-2"]
    gpt = models["gpt-4o"]
    assert (gpt.provider, gpt.base_url, gpt.api_key_env, gpt.timeout_s) == (
        "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", 30.0)
    assert gpt.fallbacks == ["gpt-4o-2", "claude"]  # the second deployment, then the rule
    assert models["support-bot"].model == "ft:gpt-4o-mini-2024-07-18:acme::AbC123"
    claude = models["claude"]
    assert (claude.provider, claude.model, claude.api_key_env, claude.max_retries) == (
        "anthropic", "claude-3-5-haiku-20241022", "ANTHROPIC_API_KEY", 3)
    local = models["local"]
    assert (local.provider, local.base_url, local.model) == (
        "openai", "http://vllm:8000/v1", "meta-llama/Llama-3.1-8B-Instruct")
    azure = models["gpt-4o-2"]
    assert (azure.provider, azure.model, azure.api_key_env) == ("azure", "gpt4o-eu",
                                                                 "GPT_4O_2_API_KEY")


def test_secrets_written_in_the_yaml_are_never_copied_and_gaps_are_noted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = convert(tmp_path, capsys)
    assert "sk-written-in-the-file" not in out
    notes = [line for line in out.splitlines() if line.startswith("# note:")]
    assert any("api_key is written in the YAML" in n and "GPT_4O_2_API_KEY" in n for n in notes)
    assert any("wildcard" in n for n in notes) and any("rpm" in n for n in notes)
    assert any("AZURE_API_VERSION" in n for n in notes)
    assert any("master_key" in n for n in notes)


def test_a_file_without_model_list_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = convert(tmp_path, capsys, "general_settings: {}\n")
    assert code == 2 and out == "" and "no model_list" in err
    code, _, err = convert(tmp_path, capsys, "model_list:\n  - model_name: x\n")
    assert code == 2 and "no litellm_params.model" in err
