"""Validated configuration: the base of every config section of the agent, and the error a bad one raises.

Each component declares its own section as a `ConfigModel` (pydantic) next to its code (`RiskLimits` in
host/risk.py, ...); host/config.py assembles them into the agent's TOML file. A section refuses unknown keys
and wrong types; `ConfigError` names every bad field by its dotted path in the file
(`risk.max_order_shares: Input should be greater than 0, got -5`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["ConfigError", "ConfigModel", "validate_section"]


class ConfigModel(BaseModel):
    """A config section: unknown keys are refused, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message lists each bad field as `path: problem, got value`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"bad configuration in {source}:\n  " + "\n  ".join(problems))


def describe(error: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, each naming the field's dotted path under `prefix`."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        got = problem.get("input")
        shown = "" if problem["type"] == "missing" or isinstance(got, dict) else f", got {got!r}"
        lines.append(f"{path or '(top)'}: {problem['msg']}{shown}")
    return lines


Model = TypeVar("Model", bound=BaseModel)


def validate_section(model: type[Model], data: Any, source: str, prefix: str = "") -> Model:
    """`model` built from `data`, or ConfigError naming every bad field (prefixed with the section's name)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, describe(e, prefix)) from None
