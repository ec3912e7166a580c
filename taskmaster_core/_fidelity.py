"""The fidelity walk: whether a payload comes back as it was put.

docs/serializers.md, "What comes back": the built-in serializers refuse, at
``dumps``, a payload that would not come back as it was put. This module is
the rule: :func:`same_value` (what "comes back as it was put" means), the
quick plain-data checks (``_plain_json``, ``_plain_msgpack``: one type lookup
per value), and the walks (``_walk_json``, ``_walk_msgpack``) that find what
the format cannot carry and where, raising :class:`_Unfaithful`, which the
serializer turns into a ``SerializationError`` naming itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from ._errors import PayloadValidationError, SerializationError

__all__: list[str] = []


def same_value(back: Any, put: Any) -> bool:
    """Whether ``back`` (a decoded payload) is what ``put`` was, by the rule of
    docs/serializers.md: equal values of the same types, except that a tuple
    may come back as a list and NaN equals NaN; Struct and dataclass instances
    compare field by field; datetimes and times also keep their UTC offset."""
    if back is put:
        return True
    kind = type(put)
    if kind is tuple or kind is list:
        return (
            (type(back) is list or type(back) is tuple)
            and len(back) == len(put)
            and all(same_value(b, p) for b, p in zip(back, put, strict=True))
        )
    if type(back) is not kind:
        return False
    if kind is float:
        return bool(back == put or (back != back and put != put))
    if kind is dict:
        return len(back) == len(put) and all(
            k in back and same_value(back[k], v) for k, v in put.items()
        )
    if isinstance(put, msgspec.Struct):
        names: tuple[str, ...] = put.__struct_fields__
        return all(same_value(getattr(back, n), getattr(put, n)) for n in names)
    if dataclasses.is_dataclass(put):
        return all(
            same_value(getattr(back, f.name), getattr(put, f.name)) for f in dataclasses.fields(put)
        )
    if kind is dt.datetime or kind is dt.time:
        return bool(back == put and back.utcoffset() == put.utcoffset())
    return bool(back == put)


# -- the walk ----------------------------------------------------------------

_TYPED_ADVICE = "give its fields precise types (not Any), or use the msgpack serializer"
_TYPE_ADVICE = "declare a payload type (a msgspec.Struct or dataclass with that field type)"
_MSGPACK_ADVICE = "use the msgpack serializer or declare a payload type"
_NONE = type(None)
_JSON_LEAVES = frozenset({str, int, bool, _NONE})
_MSGPACK_LEAVES = frozenset({str, bool, _NONE, bytes, float})
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class _Unfaithful(Exception):
    """Internal: a value the serializer would change; ``path`` (innermost
    first) is filled in as it propagates out of the walk."""

    def __init__(
        self,
        value: Any,
        reason: str,
        advice: str,
        *,
        key: bool = False,
        cannot: bool = False,
        mismatch: bool = False,
    ) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.advice = advice
        self.key = key
        self.cannot = cannot
        self.mismatch = mismatch
        self.path: list[Any] = []

    def error(self, name: str) -> SerializationError:
        where = "payload" + "".join(f"[{k!r}]" for k in reversed(self.path))
        what = _describe(self.value)
        subject = f"the key {self.value!r} ({what}) in {where}" if self.key else f"{where} ({what})"
        verb = "cannot encode" if self.cannot else "cannot carry"
        manner = "" if self.cannot else " faithfully"
        advice = f"; {self.advice}" if self.advice else ""
        message = f"{name} {verb} {subject}{manner}: {self.reason}{advice}"
        if self.mismatch:
            return PayloadValidationError(message)
        return SerializationError(message)


def _plain_json(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind in _JSON_LEAVES:
                continue
            if kind is float:
                if item - item != 0.0:  # NaN or an infinity
                    return False
            elif not _plain_json(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            kind = type(item)
            if kind in _JSON_LEAVES:
                continue
            if kind is float:
                if item - item != 0.0:
                    return False
            elif not _plain_json(item):
                return False
        return True
    if kind in _JSON_LEAVES:
        return True
    return kind is float and value - value == 0.0


def _plain_msgpack(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind in _MSGPACK_LEAVES:
                continue
            if kind is int:
                if not _INT64_MIN <= item <= _UINT64_MAX:
                    return False
            elif not _plain_msgpack(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            kind = type(item)
            if kind in _MSGPACK_LEAVES:
                continue
            if kind is int:
                if not _INT64_MIN <= item <= _UINT64_MAX:
                    return False
            elif not _plain_msgpack(item):
                return False
        return True
    if kind in _MSGPACK_LEAVES:
        return True
    return kind is int and _INT64_MIN <= value <= _UINT64_MAX


def _walk_json(value: Any, typed: Callable[[Any], object]) -> None:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _json_key(key)
            kind = type(item)
            if kind in _JSON_LEAVES or (kind is float and item - item == 0.0):
                continue
            try:
                _walk_json(item, typed)
            except _Unfaithful as exc:
                exc.path.append(key)
                raise
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            kind = type(item)
            if kind in _JSON_LEAVES or (kind is float and item - item == 0.0):
                continue
            try:
                _walk_json(item, typed)
            except _Unfaithful as exc:
                exc.path.append(index)
                raise
    elif kind in _JSON_LEAVES:
        pass
    elif kind is float:
        if value - value != 0.0:
            raise _Unfaithful(value, "it would arrive as null", "use the msgpack serializer")
    elif kind is bytes or kind is bytearray or kind is memoryview:
        raise _Unfaithful(value, "it would arrive as a base64 string", _MSGPACK_ADVICE)
    elif _is_typed(value):
        typed(value)
    else:
        raise _other(value)


_STRING_LIKE_KEYS = (
    str,
    int,
    float,
    bytes,
    enum.Enum,
    uuid.UUID,
    dt.date,
    dt.time,
    decimal.Decimal,
)


def _json_key(key: Any) -> _Unfaithful:
    if isinstance(key, _STRING_LIKE_KEYS) and type(key) is not bool:
        # msgspec writes these as JSON strings, and they come back as str
        return _Unfaithful(key, "it would arrive as a str key", _MSGPACK_ADVICE, key=True)
    return _Unfaithful(key, "JSON object keys are strings", _MSGPACK_ADVICE, key=True, cannot=True)


def _walk_msgpack(value: Any, typed: Callable[[Any], object]) -> None:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) not in _MSGPACK_LEAVES:
                _msgpack_key(key)
            kind = type(item)
            if kind in _MSGPACK_LEAVES or (kind is int and _INT64_MIN <= item <= _UINT64_MAX):
                continue
            try:
                _walk_msgpack(item, typed)
            except _Unfaithful as exc:
                exc.path.append(key)
                raise
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            kind = type(item)
            if kind in _MSGPACK_LEAVES or (kind is int and _INT64_MIN <= item <= _UINT64_MAX):
                continue
            try:
                _walk_msgpack(item, typed)
            except _Unfaithful as exc:
                exc.path.append(index)
                raise
    elif kind in _MSGPACK_LEAVES:
        pass
    elif kind is int:
        _msgpack_int(value)
    elif kind is bytearray or kind is memoryview:
        raise _Unfaithful(value, "it would arrive as bytes", "pass bytes(...)")
    elif _is_typed(value):
        typed(value)
    elif kind is dt.datetime:
        if value.tzinfo is not dt.UTC:
            arrival = "a string" if value.tzinfo is None else "a datetime in UTC"
            raise _Unfaithful(
                value,
                f"it would arrive as {arrival} (msgpack keeps only datetimes in UTC)",
                "convert it with .astimezone(datetime.UTC), or declare a payload type",
            )
    else:
        raise _other(value)


def _msgpack_int(value: int) -> None:
    if not _INT64_MIN <= value <= _UINT64_MAX:
        raise _Unfaithful(
            value,
            "msgpack integers run from -2**63 to 2**64 - 1",
            "use the json serializer, or send it as a string",
            cannot=True,
        )


def _msgpack_key(key: Any) -> None:
    """A msgpack map key comes back as itself when it is a plain scalar, bytes,
    an int in range, or a tuple of those (decoded as a tuple)."""
    kind = type(key)
    if kind in _MSGPACK_LEAVES:
        return
    if kind is int:
        try:
            _msgpack_int(key)
        except _Unfaithful as exc:
            exc.key = True
            raise
        return
    if kind is tuple:
        for part in key:
            try:
                _msgpack_key(part)
            except _Unfaithful as exc:
                exc.value = key
                raise
        return
    if kind is dt.datetime and key.tzinfo is dt.UTC:
        return
    arrival = _arrival(key)
    raise _Unfaithful(
        key,
        "a map key is plain data" if arrival is None else f"it would arrive as {arrival}",
        "use plain keys (str, int, bytes)",
        key=True,
        cannot=arrival is None,
    )


def _other(value: Any) -> _Unfaithful:
    """The verdict on a value that is neither plain data nor typed."""
    arrival = _arrival(value)
    if arrival is None:
        return _Unfaithful(
            value,
            "payloads are plain data (None, bool, int, float, str, bytes with msgpack,"
            " list, tuple, dict) or msgspec.Struct and dataclass instances",
            "",
            cannot=True,
        )
    if isinstance(value, list | dict | set | frozenset):
        advice = f"convert it with {_plain_builtin(value)}(...), or declare a payload type"
    else:
        advice = _TYPE_ADVICE
    return _Unfaithful(value, f"it would arrive as {arrival}", advice)


def _arrival(value: Any) -> str | None:
    """What msgspec turns ``value`` into, for the types it changes; ``None``
    for a type it cannot encode at all."""
    if isinstance(value, enum.Enum):
        return f"its value {_short(value.value)}"
    if isinstance(value, dt.datetime | dt.date | dt.time | uuid.UUID | decimal.Decimal):
        return "a string"
    if isinstance(value, dt.timedelta):
        return "an ISO 8601 duration string"
    if isinstance(value, set | frozenset):
        return "a list (in no particular order)"
    if isinstance(value, tuple):  # namedtuples and other tuple subclasses
        return "a list"
    if isinstance(value, list):
        return "a plain list"
    if isinstance(value, dict):
        return "a plain dict"
    return None


def _plain_builtin(value: Any) -> str:
    for kind in (list, dict):
        if isinstance(value, kind):
            return kind.__name__
    return "list"


def _is_typed(value: Any) -> bool:
    """A Struct or dataclass instance: it round-trips by its own class."""
    return isinstance(value, msgspec.Struct) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def _describe(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return f"float {value!r}"
    if kind is int and not _INT64_MIN <= value <= _UINT64_MAX:
        return f"int of {value.bit_length()} bits"
    return kind.__qualname__


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(type: Any) -> str:
    return getattr(type, "__qualname__", None) or repr(type)
