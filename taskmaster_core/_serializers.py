"""Serializers: how payloads become bytes and back.

A serializer has a ``name`` (stored with every job, so a consumer always
decodes with what the job was written with), ``dumps`` and ``loads``.
JSON (the default) and msgpack are built in, both on msgspec; more come from
plugins through the ``taskmaster_serializers`` hook.

The built-ins refuse, at ``dumps``, a payload that would not come back as it
was put (docs/serializers.md, "What comes back"): a walk over the payload
looks for what the format cannot carry (bytes or NaN in JSON, a datetime, a
UUID, a set, a non-string key in JSON, ...). Plain data passes the walk with
one type lookup per value; a ``msgspec.Struct`` or dataclass instance is
checked by decoding it back into its own class. A payload whose queue
declares a payload type skips the walk (:func:`encode_declared`): the type
decides what it becomes, and the publisher checks it by decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import msgspec

from ._errors import PayloadValidationError, SerializationError
from ._fidelity import (
    _TYPED_ADVICE,
    _is_typed,
    _plain_json,
    _plain_msgpack,
    _short,
    _type_name,
    _Unfaithful,
    _walk_json,
    _walk_msgpack,
    same_value,
)

__all__ = ["JsonSerializer", "MsgpackSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns payloads into bytes and back."""

    @property
    def name(self) -> str:
        """The name stored with each job; unique among registered serializers."""
        ...

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``; raise ``SerializationError`` if it cannot be encoded."""
        ...

    def loads(self, data: bytes, type: Any = None) -> Any:
        """Decode ``data``, validating against ``type`` when given; raise
        ``SerializationError`` (``PayloadValidationError`` for a type mismatch)."""
        ...


class _MsgspecSerializer:
    """Shared plumbing: one encoder, one decoder per payload type (cached), and
    the fidelity walk of untyped payloads."""

    name: str
    _encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
    _plain: Callable[[Any], bool]
    """Whether a value is plain data the format carries as it is: a quick
    yes for the usual payload, no for anything the walk must look at."""

    def __init__(self) -> None:
        self._decoders: dict[Any, Any] = {}

    def _decoder_for(self, type: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _walk(self, obj: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj``, refusing what would not come back as it was put."""
        try:
            if not self._plain(obj):  # the fast check; the walk finds what and where
                if _is_typed(obj):
                    return self._typed(obj)
                self._walk(obj)
            return self._encoder.encode(obj)
        except _Unfaithful as exc:
            raise exc.error(self.name) from exc.__cause__
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"{self.name} cannot encode payload: {exc}") from exc

    def loads(self, data: bytes, type: Any = None) -> Any:
        decoder = self._decoders.get(type)
        if decoder is None:
            decoder = self._decoders.setdefault(type, self._decoder_for(type))
        try:
            return decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise PayloadValidationError(
                f"payload does not match {_type_name(type)}: {exc}"
            ) from exc
        except msgspec.DecodeError as exc:
            raise SerializationError(f"{self.name} cannot decode payload: {exc}") from exc

    def _encode_declared(self, obj: Any) -> bytes:
        try:
            return self._encoder.encode(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"{self.name} cannot encode payload: {exc}") from exc

    def _typed(self, obj: Any) -> bytes:
        """Encode a Struct or dataclass instance and check that decoding the
        bytes back into its own class gives an equal object."""
        data = self._encoder.encode(obj)
        cls = type(obj)
        try:
            decoder = self._decoders.get(cls)
            if decoder is None:
                decoder = self._decoders.setdefault(cls, self._decoder_for(cls))
        except Exception as exc:  # msgspec raises TypeError, NameError... for odd classes
            raise _Unfaithful(obj, f"its class cannot be decoded: {exc}", "") from exc
        try:
            back = decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise _Unfaithful(
                obj,
                f"decoding it back into {cls.__qualname__} fails: {exc}",
                _TYPED_ADVICE,
                mismatch=True,
            ) from exc
        if not same_value(back, obj):
            raise _Unfaithful(obj, f"it would arrive as {_short(back)}", _TYPED_ADVICE)
        return data

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class JsonSerializer(_MsgspecSerializer):
    """JSON via ``msgspec.json`` (the default serializer, name ``"json"``)."""

    name = "json"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()
        self._plain = _plain_json

    def _decoder_for(self, type: Any) -> Any:
        return msgspec.json.Decoder(Any if type is None else type)

    def _walk(self, obj: Any) -> None:
        _walk_json(obj, self._typed)


class MsgpackSerializer(_MsgspecSerializer):
    """MessagePack via ``msgspec.msgpack`` (name ``"msgpack"``): compact, binary-safe."""

    name = "msgpack"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.msgpack.Encoder()
        self._plain = _plain_msgpack

    def _decoder_for(self, type: Any) -> Any:
        return msgspec.msgpack.Decoder(Any if type is None else type)

    def _walk(self, obj: Any) -> None:
        _walk_msgpack(obj, self._typed)


def encode_declared(serializer: Serializer, obj: Any) -> bytes:
    """Encode a payload whose queue declares a payload type: the built-ins skip
    the untyped walk, as the type decides what the payload becomes (the
    publisher then decodes the bytes into the type, and calls
    :func:`check_declared`). Other serializers just ``dumps``."""
    if isinstance(serializer, _MsgspecSerializer):
        return serializer._encode_declared(obj)
    return serializer.dumps(obj)


def check_declared(serializer: Serializer, put: Any, decoded: Any) -> None:
    """After a payload of a declared type was decoded into that type: a Struct
    or dataclass instance must have come back equal to itself (a field typed
    ``Any`` holding bytes, say, comes back as a string in JSON). Built-ins only."""
    if (
        isinstance(serializer, _MsgspecSerializer)
        and type(decoded) is type(put)
        and _is_typed(put)
        and not same_value(decoded, put)
    ):
        raise _Unfaithful(put, f"it would arrive as {_short(decoded)}", _TYPED_ADVICE).error(
            serializer.name
        )
