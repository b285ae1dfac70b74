"""Config loading: strict keys, TOML paths in messages, the example file loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "config.example.toml")
    assert cfg.models and cfg.server.port == 8080


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    p = write(tmp_path, '[[models]]\nname = "a"\nbase_url = "http://x"\ntimout_s = 3\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.timout_s: unknown key"):
        load_config(p)


def test_wrong_type_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(write(tmp_path, '[server]\nport = "eighty"\n'))


def test_openai_provider_needs_base_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs base_url"):
        load_config(write(tmp_path, '[[models]]\nname = "a"\n'))


def test_fallback_must_exist(tmp_path: Path) -> None:
    text = '[[models]]\nname = "a"\nbase_url = "http://x"\nfallbacks = ["b"]\n'
    with pytest.raises(ConfigError, match="fallback 'b' is not a configured model"):
        load_config(write(tmp_path, text))


def test_duplicate_models(tmp_path: Path) -> None:
    text = '[[models]]\nname = "a"\nbase_url = "http://x"\n' * 2
    with pytest.raises(ConfigError, match="duplicate model names: a"):
        load_config(write(tmp_path, text))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_env_var_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIMGATE_CONFIG", str(write(tmp_path, "[server]\nport = 9000\n")))
    assert load_config().server.port == 9000


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_provider_litellm_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, '[store]\npath = "s.db"\n[[models]]\nname = "c"\n'
                          'provider = "antropic"\nmodel = "claude-3-5-haiku"\n')
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "models[0].provider: 'antropic' is not a provider litellm knows" in err
    assert "'anthropic'" in err  # the suggestion


def test_cli_help_does_not_load_heavy_modules() -> None:
    import subprocess
    import sys

    code = ("import sys; from gateway.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'litellm', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_gateway_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, gateway.app, gateway.proxy, gateway.cli; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_student_engine_is_a_typed_table_checked_at_start(tmp_path: Path) -> None:
    from gateway.config import EmbeddedEngineConfig, VLLMEngineConfig

    assert isinstance(load_config(write(tmp_path, "")).students.engine, EmbeddedEngineConfig)
    cfg = load_config(write(tmp_path, '[students.engine]\ntype = "vllm"\n'
                                      'base_url = "http://127.0.0.1:8000/v1"\n'))
    assert isinstance(cfg.students.engine, VLLMEngineConfig)
    assert cfg.students.engine.constrained
    short = load_config(write(tmp_path, '[students]\nengine = "embedded"\n'))
    assert short.students.engine.type == "embedded"
    with pytest.raises(ConfigError, match=r"students\.engine\.vllm\.base_url"):
        load_config(write(tmp_path, '[students]\nengine = "vllm"\n'))  # no server named
    with pytest.raises(ConfigError, match=r"students\.engine\.embedded\.base_url: unknown key"):
        load_config(write(tmp_path, '[students.engine]\ntype = "embedded"\nbase_url = "x"\n'))
    with pytest.raises(ConfigError, match=r'needs type = "embedded" or type = "vllm", not None'):
        load_config(write(tmp_path, '[students.engine]\nbase_url = "http://x"\n'))
    with pytest.raises(ConfigError, match="not 'tgi'"):
        load_config(write(tmp_path, '[students.engine]\ntype = "tgi"\n'))


def test_old_flat_engine_keys_say_where_they_moved(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'\[students\.engine\] with type = "vllm", '
                                          r"base_url = \.\.\."):
        load_config(write(tmp_path, '[students]\nengine = "vllm"\n'
                                    'vllm_base_url = "http://127.0.0.1:8000/v1"\n'))
    with pytest.raises(ConfigError, match=r'type = "embedded", max_batch = \.\.\.'):
        load_config(write(tmp_path, '[students]\nmax_batch = 4\n'))


def test_request_path_imports_no_learning_code() -> None:
    """The dependency runs one way: distill → gateway → policies. Every gateway module but
    the CLI (the composition root) imports without bringing in any `distill` module."""
    import pkgutil
    import subprocess
    import sys

    import gateway

    names = [m.name for m in pkgutil.walk_packages(gateway.__path__, "gateway.")
             if not m.name.startswith("gateway.cli")]
    assert "gateway.app" in names and "gateway.students" in names
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'distill' or m.startswith('distill.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
