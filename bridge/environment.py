"""Settings from the environment: loading with every problem named, misspelt variables, and the
reference of all variables that the README's table and `talon-bridge run --help` show."""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import textwrap
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bridge.errors import ConfigError
from bridge.settings import ENV_PREFIX, SECRETS_DIR, KafkaSettings, Settings

__all__ = ["help_text", "load", "reference", "unknown_variables", "warn_unknown"]

log = logging.getLogger("bridge.settings")


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + str(loc[0]).upper() if loc else ENV_PREFIX + "*"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """One (variable, message) per invalid or missing variable, in field order."""
    found: dict[str, str] = {}
    for error in exc.errors():
        message = error["msg"]
        if error["type"] == "missing":
            message = "is required but not set"
        elif error["type"] == "value_error":
            message = str(error["ctx"]["error"])  # without pydantic's "Value error, " prefix
        found.setdefault(_env_name(error["loc"]), message)
    return list(found.items())


T = TypeVar("T", bound=KafkaSettings)


def load(cls: type[T], overrides: Mapping[str, Any] | None = None) -> T:
    """Build settings from the environment; every problem goes into one `ConfigError`."""
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR", SECRETS_DIR)
    kwargs: dict[str, Any] = dict(overrides or {})
    if os.path.isdir(secrets_dir):
        kwargs["_secrets_dir"] = secrets_dir
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        # A misspelt name is often why a required one is missing: name those too.
        (first, message), *more = _problems(exc) + unknown_variables(os.environ)
        raise ConfigError(first, message, more=more) from None
    except SettingsError as exc:
        # Raised for values that must be JSON but are not, before anything else is checked.
        match = re.search(r'field "([a-z_]+)"', str(exc))
        name = ENV_PREFIX + match.group(1).upper() if match else ENV_PREFIX + "*"
        raise ConfigError(name, "is not valid JSON") from None


def _variables() -> dict[str, str]:
    """Every variable the bridge reads, with its meaning."""
    known = {
        ENV_PREFIX + name.upper(): field.description or ""
        for name, field in Settings.model_fields.items()
    }
    known[ENV_PREFIX + "SECRETS_DIR"] = "folder of secret files named like their variable"
    return known


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, why) for each `BRIDGE_*` variable the bridge does not read: a misspelt
    setting would otherwise be ignored without a word."""
    known = _variables()
    found = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            found.append((name, f"is not a setting of talon-bridge and is ignored{hint}"))
    return found


def warn_unknown() -> None:
    """Log `unknown_variables` of the environment; called once logging is set up."""
    for name, why in unknown_variables(os.environ):
        log.warning("%s %s", name, why, extra={"variable": name})


def _default(name: str) -> str | None:
    """A variable's default as it would be written in the environment; None if required."""
    if name == "secrets_dir":
        return SECRETS_DIR
    field = Settings.model_fields[name]
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def reference() -> list[tuple[str, str | None, str]]:
    """(variable, default or None when required, meaning) for every setting, in model order.

    The README's settings table and `talon-bridge run --help` are both this list.
    """
    return [
        (variable, _default(variable.removeprefix(ENV_PREFIX).lower()), meaning)
        for variable, meaning in _variables().items()
    ]


def help_text() -> str:
    """The settings as `--help` shows them (the README is not in the image)."""
    lines = ["settings, from BRIDGE_* environment variables (or secret files):"]
    indent = " " * 6
    for variable, default, meaning in reference():
        shown = "required" if default is None else f"default: {default or 'unset'}"
        lines.append(f"  {variable}  ({shown})")
        plain = meaning.replace("`", "")
        lines += textwrap.wrap(plain, 88, initial_indent=indent, subsequent_indent=indent)
    return "\n".join(lines)
