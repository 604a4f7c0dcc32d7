"""The Talon.One applications one deployment serves, and which records go to which.

Retailers run one Talon.One application per country or brand, each with its own base URL
and Integration API key. `BRIDGE_APPLICATIONS_FILE` names a YAML (or JSON) file listing
them::

    applications:
      - name: de
        base_url: https://acme.europe-west1.talon.one
        api_key_file: /var/run/secrets/talon-apps/de
        topics: [commands.de]
      - name: fr
        base_url: https://acme.europe-west1.talon.one
        api_key_file: /var/run/secrets/talon-apps/fr
    default: de

A record goes to the application its header (`BRIDGE_APPLICATION_HEADER`) names; without
the header, to the application listing its input topic; else to `default`. A header naming
no application is not routed (the pipeline dead-letters it): a header beats the topic.

Without the file the worker serves one application, `default`, from
`BRIDGE_TALON_BASE_URL` and `BRIDGE_TALON_API_KEY`. Keys are read from their files once, at
start, and kept as secrets (never logged, never in a `repr`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

__all__ = [
    "DEFAULT_APPLICATION",
    "Application",
    "ApplicationsTable",
    "application_setting",
    "check_base_url",
    "load_table",
    "single_application",
]

# The one application of a deployment without a routing table, as metrics and logs name it.
DEFAULT_APPLICATION = "default"

# A short label: it becomes a metric label value and a header value.
_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
# Header values quoted in a dead letter's message are cut to this many characters.
_QUOTED = 64


def check_base_url(value: str, *, allow_http: bool, key_setting: str) -> str:
    """A Talon.One base URL without a trailing slash; ValueError says what is wrong."""
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if "@" in urlsplit(value).netloc:
        raise ValueError(f"holds credentials; the API key goes in {key_setting}")
    if value.startswith("http://") and not allow_http:
        raise ValueError(
            "is plain http, which sends the API key in clear text; use https "
            "(or set BRIDGE_TALON_ALLOW_INSECURE_HTTP=true for a local simulator)"
        )
    return value


class Application(BaseModel):
    """One Talon.One application: where it is, its key, and the input topics routed to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME)
    base_url: str = Field(min_length=1)
    api_key: SecretStr
    topics: tuple[str, ...] = ()


class _Entry(BaseModel):
    """An application as the file lists it (the key as a file path)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME)
    base_url: str = Field(min_length=1)
    api_key_file: str = Field(min_length=1)
    topics: list[str] = []


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    applications: list[_Entry] = Field(min_length=1)
    default: str | None = None


class ApplicationsTable(BaseModel):
    """The applications and the routing rules; `route` is the whole decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    applications: tuple[Application, ...]
    default: str | None = None

    def names(self) -> list[str]:
        return [a.name for a in self.applications]

    def topic_routes(self) -> dict[str, str]:
        return {topic: a.name for a in self.applications for topic in a.topics}

    def route(self, topic: str, named: str | None) -> str | None:
        """The application a record of `topic` goes to, `named` being its header's value
        (None without the header); None when it goes nowhere."""
        if named is not None:
            return named if named in self._names else None
        return self._topics.get(topic, self.default)

    def unrouted(self, topic: str, named: str | None) -> str:
        """Why `route` found nothing, for the dead letter's message."""
        if named is not None:
            return (
                f"the record names application {named[:_QUOTED]!r}, which is not in "
                "BRIDGE_APPLICATIONS_FILE"
            )
        return f"no application takes topic {topic!r} and BRIDGE_APPLICATIONS_FILE names no default"

    @cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(self.names())

    @cached_property
    def _topics(self) -> dict[str, str]:
        return self.topic_routes()


def _where(loc: tuple[int | str, ...], raw: Any) -> str:
    """`applications[1] (fr).base_url` for an error at that place of the file."""
    if len(loc) >= 2 and loc[0] == "applications" and isinstance(loc[1], int):
        entry = f"applications[{loc[1]}]"
        try:
            entry += f" ({raw['applications'][loc[1]]['name']})"
        except (KeyError, IndexError, TypeError):
            pass
        rest = ".".join(str(p) for p in loc[2:])
        return f"{entry}.{rest}" if rest else entry
    return ".".join(str(p) for p in loc) or "the file"


def _read_key(entry: _Entry, index: int) -> SecretStr:
    where = f"applications[{index}] ({entry.name}).api_key_file"
    try:
        key = Path(entry.api_key_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {entry.api_key_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: {entry.api_key_file} is not UTF-8 text") from None
    if not key:
        raise ValueError(f"{where}: {entry.api_key_file} is empty")
    return SecretStr(key)


def _check(parsed: _File, input_topics: list[str]) -> None:
    seen: dict[str, int] = {}
    owner: dict[str, str] = {}
    for i, entry in enumerate(parsed.applications):
        where = f"applications[{i}] ({entry.name})"
        if entry.name in seen:
            raise ValueError(f"{where}.name: applications[{seen[entry.name]}] has it already")
        seen[entry.name] = i
        for topic in entry.topics:
            if topic not in input_topics:
                raise ValueError(f"{where}.topics: {topic!r} is not in BRIDGE_INPUT_TOPICS")
            if topic in owner:
                raise ValueError(f"{where}.topics: {topic!r} goes to {owner[topic]} already")
            owner[topic] = entry.name
    if parsed.default is not None and parsed.default not in seen:
        raise ValueError(f"default: {parsed.default!r} is not one of the applications")


def load_table(path: str, *, input_topics: list[str], allow_http: bool) -> ApplicationsTable:
    """Read, check and resolve the routing table at `path` (keys read from their files).

    Raises ValueError naming the entry and field at fault.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML or JSON: {exc}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        message = "is required" if error["type"] == "missing" else error["msg"]
        raise ValueError(f"{_where(error['loc'], raw)}: {message}") from None
    _check(parsed, input_topics)
    applications = []
    for i, entry in enumerate(parsed.applications):
        try:
            url = check_base_url(
                entry.base_url,
                allow_http=allow_http,
                key_setting=f"applications[{i}].api_key_file",
            )
        except ValueError as exc:
            raise ValueError(f"applications[{i}] ({entry.name}).base_url: {exc}") from None
        applications.append(
            Application(
                name=entry.name,
                base_url=url,
                api_key=_read_key(entry, i),
                topics=tuple(entry.topics),
            )
        )
    return ApplicationsTable(applications=tuple(applications), default=parsed.default)


def _table_setting(value: Any, settings: dict[str, Any]) -> Any:
    """`BRIDGE_APPLICATIONS_FILE`'s value: the loaded table, given the settings read so far."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    return load_table(
        value.strip(),
        input_topics=settings.get("input_topics", []),
        allow_http=bool(settings.get("talon_allow_insecure_http")),
    )


def single_application(base_url: str | None, api_key: SecretStr | None) -> ApplicationsTable:
    """The table of a deployment without one: `default`, from the base URL and key."""
    if base_url is None or api_key is None:
        raise ValueError("neither BRIDGE_APPLICATIONS_FILE nor BRIDGE_TALON_BASE_URL is set")
    one = Application(name=DEFAULT_APPLICATION, base_url=base_url, api_key=api_key)
    return ApplicationsTable(applications=(one,), default=DEFAULT_APPLICATION)


def application_setting(field: str, value: Any, settings: dict[str, Any]) -> Any:
    """A setting's value as given (before its type is checked), given the settings read so
    far: `BRIDGE_APPLICATIONS_FILE` becomes the loaded table; `BRIDGE_TALON_BASE_URL` and
    `BRIDGE_TALON_API_KEY` are required without it, the URL checked."""
    if field == "applications_file":
        return _table_setting(value, settings)
    # A table that failed to load is reported as such, not as these missing.
    if value is None and "applications_file" in settings and not settings["applications_file"]:
        raise ValueError("is required but not set (or set BRIDGE_APPLICATIONS_FILE)")
    if field == "talon_base_url" and isinstance(value, str):
        return check_base_url(
            value,
            allow_http=bool(settings.get("talon_allow_insecure_http")),
            key_setting="BRIDGE_TALON_API_KEY",
        )
    return value
