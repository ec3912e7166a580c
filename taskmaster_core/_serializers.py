"""Serializers: how payloads become bytes and back.

A serializer has a ``name`` (stored with every job, so a consumer always
decodes with what the job was written with), ``dumps`` and ``loads``.
JSON (the default) and msgpack are built in, both on msgspec; more come from
plugins through the ``taskmaster_serializers`` hook.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from ._errors import PayloadValidationError, SerializationError

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
    """Shared plumbing: one encoder, one decoder per payload type (cached)."""

    name: str
    _encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder

    def __init__(self) -> None:
        self._decoders: dict[Any, Any] = {}

    def _decoder_for(self, type: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def dumps(self, obj: Any) -> bytes:
        try:
            return self._encoder.encode(obj)
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class JsonSerializer(_MsgspecSerializer):
    """JSON via ``msgspec.json`` (the default serializer, name ``"json"``)."""

    name = "json"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()

    def _decoder_for(self, type: Any) -> Any:
        return msgspec.json.Decoder(Any if type is None else type)


class MsgpackSerializer(_MsgspecSerializer):
    """MessagePack via ``msgspec.msgpack`` (name ``"msgpack"``): compact, binary-safe."""

    name = "msgpack"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.msgpack.Encoder()

    def _decoder_for(self, type: Any) -> Any:
        return msgspec.msgpack.Decoder(Any if type is None else type)


def _type_name(type: Any) -> str:
    return getattr(type, "__qualname__", None) or repr(type)
