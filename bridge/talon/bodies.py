"""Request bodies checked and serialised without building pydantic models.

The request models in `bridge.talon.models` are the one definition of what the bridge sends.
Validating a session update through them costs about 13 µs (2.4 µs a cart line), the largest
share of the worker's event loop. `prepare` checks the same document against msgspec types
derived from those models, field by field and constraint by constraint, and serialises it in
one step, in about a third of the time.

It accepts nothing the models would refuse. Anything the msgspec types do not accept, or cannot
serialise, goes through the pydantic model after all, which either accepts it (pydantic is
laxer about types) or raises the `ValidationError` naming the field. A property test checks
that whatever `prepare` accepts, the model accepts and serialises to the same JSON.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, Union, get_args, get_origin

import annotated_types as at
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.types import StringConstraints

__all__ = ["Prepared", "prepare", "prepare_with", "serialised"]

_M = TypeVar("_M", bound=BaseModel)

_PLAIN: Final = (str, int, float, bool, type(None))
_RANGES: Final = {at.Ge: "ge", at.Gt: "gt", at.Le: "le", at.Lt: "lt"}


class Prepared(Generic[_M]):
    """The JSON of a request body that a `_M` model would accept and serialise the same way."""

    __slots__ = ("_json",)

    def __init__(self, json: bytes) -> None:
        self._json = json

    def to_json(self) -> bytes:
        """The body's wire JSON, as the model's own `to_json()` would write it."""
        return self._json


def prepare(model: type[_M], body: dict[str, Any]) -> _M | Prepared[_M]:
    """Check `body` (wire names; None fields are left out) against `model` and serialise it.

    Raises:
        pydantic.ValidationError: The model refuses the body.
        TypeError: The model uses a type or constraint that has no msgspec equivalent.
    """
    derived = _derived(model)  # raises TypeError for a model with no msgspec equivalent
    try:
        return Prepared(_encode(msgspec.convert(body, derived)))
    except _REFUSED:
        return model.model_validate(body)


def serialised(model: type[BaseModel], body: dict[str, Any]) -> bytes | None:
    """`body` checked against `model` and serialised, as in `prepare`; None where only the
    model can tell (the caller then prepares the document it is part of)."""
    try:
        return _encode(msgspec.convert(body, _derived(model)))
    except _REFUSED:
        return None


def prepare_with(
    model: type[_M], body: dict[str, Any], path: tuple[str, ...], json: bytes
) -> Prepared[_M] | None:
    """`prepare`, with the field at `path` (attribute names; None in `body`) already checked and
    serialised as `json`. None where the rest of `body` needs the model."""
    try:
        value = msgspec.convert(body, _derived(model))
    except _REFUSED:
        return None
    return Prepared(_encode(_replaced(value, path, msgspec.Raw(json))))


def _replaced(value: Any, path: tuple[str, ...], new: msgspec.Raw) -> Any:
    name, *rest = path
    inner = _replaced(getattr(value, name), tuple(rest), new) if rest else new
    return msgspec.structs.replace(value, **{name: inner})


_encode = msgspec.json.Encoder().encode
_REFUSED: Final = (msgspec.ValidationError, msgspec.EncodeError, TypeError, OverflowError)


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.update(_constraints(item.metadata))
        elif isinstance(item, StringConstraints):
            unsupported = {
                k: v
                for k, v in vars(item).items()
                if v is not None and k not in ("min_length", "max_length", "pattern")
            }
            if unsupported:
                raise TypeError(f"no msgspec equivalent for {unsupported}")
            out.update({k: getattr(item, k) for k in ("min_length", "max_length", "pattern")})
        elif isinstance(item, at.MinLen):
            out["min_length"] = item.min_length
        elif isinstance(item, at.MaxLen):
            out["max_length"] = item.max_length
        elif type(item) in _RANGES:
            key = _RANGES[type(item)]
            out[key] = getattr(item, key)
        else:
            raise TypeError(f"no msgspec equivalent for the constraint {item!r}")
    return {k: v for k, v in out.items() if v is not None}


def _type(annotation: Any, metadata: list[Any] | None = None) -> Any:
    """The msgspec type that accepts what `annotation` (with `metadata`) accepts, or less."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _type(inner, [*(metadata or []), *extra])
    meta = _constraints(metadata or [])
    if origin in (Union, types.UnionType):
        if meta:
            raise TypeError(f"constraints on a union: {annotation!r}")
        args = tuple(_type(a) for a in get_args(annotation))
        return Union[args]  # noqa: UP007 - built from a runtime tuple
    if origin is list:
        (item,) = get_args(annotation)
        converted: Any = list[_type(item)]  # type: ignore[misc]
    elif origin is dict:
        key, value = get_args(annotation)
        if key is not str:
            raise TypeError(f"non-string keys: {annotation!r}")
        converted = dict[str, _type(value)]  # type: ignore[misc]
    elif origin is Literal or annotation is Any or annotation in _PLAIN:
        converted = annotation
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        converted = _derived(annotation)
    else:
        raise TypeError(f"no msgspec equivalent for {annotation!r}")
    return Annotated[converted, msgspec.Meta(**meta)] if meta else converted


@cache
def _derived(model: type[BaseModel]) -> type[msgspec.Struct]:
    """A msgspec Struct with `model`'s wire names, types and constraints.

    A field whose default is not None is required here: `omit_defaults` then leaves out exactly
    the None fields, which is what the models' `to_json()` does.
    """
    fields: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        kind = _type(info.annotation, info.metadata)
        if info.is_required() or info.default is not None:
            fields.append((name, kind, msgspec.field(name=wire)))
        else:
            fields.append((name, kind, msgspec.field(default=None, name=wire)))
    extra = model.model_config.get("extra") or "ignore"
    if extra == "allow":
        raise TypeError(f"{model.__name__} keeps unknown fields, which a Struct cannot")
    # Keyword-only, so that required fields keep their place: JSON keys come in model order.
    return msgspec.defstruct(
        model.__name__,
        fields,
        kw_only=True,
        omit_defaults=True,
        forbid_unknown_fields=extra == "forbid",
    )
