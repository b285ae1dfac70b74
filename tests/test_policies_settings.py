"""The [policy] table: defaults, strict validation, and per-task overrides resolved by for_task."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from policies.settings import PolicyConfig, TaskPolicy

DOC = Path(__file__).resolve().parent.parent / "docs" / "policies.md"


def load(text: str) -> PolicyConfig:
    return PolicyConfig.model_validate(tomllib.loads(text)["policy"])


def test_defaults() -> None:
    p = PolicyConfig().for_task("any-task")
    assert (p.min_agreement, p.confidence, p.min_heldout, p.min_live) == (0.9, 0.95, 30, 50)
    assert p.canary_steps == (5, 25, 50)
    assert (p.shadow_rate, p.audit_rate, p.primary_audit_rate) == (1.0, 0.1, 0.05)
    assert p.pin is None and p.record is True and p.sticky == "conversation"


def test_documented_example_loads_and_matches_the_defaults() -> None:
    block = re.search(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/policies.md lost its TOML example"
    cfg = load(block.group(1))
    assert cfg.model_dump(exclude={"tasks"}) == PolicyConfig().model_dump(exclude={"tasks"})
    assert [t.match for t in cfg.tasks] == ["billing-*", "*extract*"]


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ValidationError, match="min_agreemnt"):
        load("[policy]\nmin_agreemnt = 0.8\n")
    with pytest.raises(ValidationError, match="pinned"):
        load('[policy]\n[[policy.tasks]]\nmatch = "a"\npinned = "teacher"\n')


@pytest.mark.parametrize("steps", ["[25, 5]", "[5, 5]", "[0, 10]", "[10, 100]"])
def test_canary_steps_must_increase_within_1_to_99(steps: str) -> None:
    with pytest.raises(ValidationError, match="canary_steps"):
        load(f"[policy]\ncanary_steps = {steps}\n")


def test_canary_steps_can_be_empty() -> None:
    assert load("[policy]\ncanary_steps = []\n").for_task("t").canary_steps == ()


@pytest.mark.parametrize("line", ["min_agreement = 1.5", "confidence = 1.0", "audit_rate = -0.1",
                                  "min_live = 0", "sticky = \"session\"", "max_p95_latency_ms = 0"])
def test_out_of_range_values_are_errors(line: str) -> None:
    with pytest.raises(ValidationError):
        load(f"[policy]\n{line}\n")
    with pytest.raises(ValidationError):  # the same limits hold inside overrides
        load(f'[policy]\n[[policy.tasks]]\nmatch = "x"\n{line}\n')


def test_config_is_frozen() -> None:
    cfg = PolicyConfig()
    with pytest.raises(ValidationError):
        cfg.min_agreement = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.for_task("t").min_agreement = 0.5  # type: ignore[misc]


CFG = """
[policy]
min_agreement = 0.85
audit_rate = 0.2

[[policy.tasks]]
match = "billing-*"
pin = "teacher"
record = false

[[policy.tasks]]
match = "*extract*"
min_agreement = 0.95
canary_steps = [1, 10]

[[policy.tasks]]
match = "invoice-extract"
pin = "student"
"""


def test_first_matching_override_wins_and_the_rest_is_inherited() -> None:
    p = load(CFG).for_task("invoice-extract")
    assert p.matched == "*extract*" and p.pin is None  # the later exact entry never applies
    assert p.min_agreement == 0.95 and p.canary_steps == (1, 10)
    assert p.audit_rate == 0.2  # from [policy], not from the built-in default


def test_glob_matches_the_label_too() -> None:
    p = load(CFG).for_task("t-7f3a", "billing-refunds")
    assert p.pin == "teacher" and p.record is False


def test_unmatched_task_gets_the_table_values() -> None:
    p = load(CFG).for_task("summarise", "summaries")
    assert p.matched is None and p.min_agreement == 0.85 and p.canary_steps == (5, 25, 50)
    assert isinstance(p, TaskPolicy) and p.record is True


def test_glob_is_case_sensitive_and_whole_string() -> None:
    cfg = load(CFG)
    assert cfg.for_task("Billing-x").pin is None
    assert cfg.for_task("old-billing-x").pin is None


def test_an_operator_pin_wins_over_the_files() -> None:
    from policies.settings import PolicyConfig

    cfg = PolicyConfig.model_validate({"tasks": [{"match": "t-a", "pin": "student"}]})
    assert cfg.for_task("t-a").pin == "student"
    assert cfg.for_task("t-a", pin="teacher").pin == "teacher"
    assert cfg.for_task("t-b", pin="student").pin == "student"
    assert cfg.for_task("t-b").pin is None
