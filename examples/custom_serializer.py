"""A serializer plugin: zlib-compressed JSON, chosen per queue and per put."""

from __future__ import annotations

import sys
import zlib
from typing import Any

import msgspec

from taskmaster_core import (
    ACK,
    Consumer,
    Job,
    Outcome,
    PayloadValidationError,
    Publisher,
    QueueOptions,
    SerializationError,
    Serializer,
    UnknownSerializerError,
    hookimpl,
    new_plugin_manager,
)
from taskmaster_memory import MemoryBroker


class ZlibJsonSerializer:
    """JSON, compressed with zlib: for large, repetitive payloads."""

    name = "json+zlib"  # stored with every job: never rename a serializer in use

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()

    def dumps(self, obj: Any) -> bytes:
        try:
            return zlib.compress(self._encoder.encode(obj))
        except TypeError as exc:
            raise SerializationError(f"json+zlib cannot encode payload: {exc}") from exc

    def loads(self, data: bytes, type: Any = None) -> Any:
        try:
            text = zlib.decompress(data)
        except zlib.error as exc:
            raise SerializationError(f"json+zlib cannot decompress payload: {exc}") from exc
        try:
            return msgspec.json.decode(text, type=Any if type is None else type)
        except msgspec.ValidationError as exc:
            raise PayloadValidationError(str(exc)) from exc
        except msgspec.DecodeError as exc:
            raise SerializationError(f"json+zlib cannot decode payload: {exc}") from exc


# The plugin hook. In a package, the `taskmaster` entry point registers the
# module that holds it; here the script registers itself by hand below.
@hookimpl
def taskmaster_serializers() -> list[Serializer]:
    return [ZlibJsonSerializer()]


def handle(job: Job) -> Outcome:
    print(f"job {job.id}: {len(job.raw_payload)} bytes of {job.serializer}")
    return ACK


def main() -> None:
    plugins = new_plugin_manager(load_entrypoints=False)
    plugins.register(sys.modules[__name__], name="example-serializer")

    report = {"rows": [{"city": "Paris", "sales": 100}] * 200}
    with MemoryBroker() as broker:
        publisher = Publisher(
            broker,
            queues={"reports": QueueOptions(serializer="json+zlib")},
            plugins=plugins,
        )
        publisher.put("reports", report)  # the queue's serializer: json+zlib
        publisher.put("reports", report, serializer="json")  # chosen for this put
        publisher.put("reports", report, serializer="msgpack")  # built in

        try:
            publisher.put("reports", report, serializer="yaml")
        except UnknownSerializerError as exc:
            print(f"error: {exc}")

        # The consumer decodes each job with the serializer it was written with.
        with Consumer(broker, "reports", handle, plugins=plugins) as consumer:
            assert consumer.wait_idle()


if __name__ == "__main__":
    main()
