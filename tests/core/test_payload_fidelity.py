"""A payload comes back as it was put, or ``put`` refuses it (docs/serializers.md,
"What comes back").

The property test puts whatever hypothesis builds (plain data mixed with what
JSON or msgpack would change: bytes, NaN, datetimes, UUIDs, sets, int keys,
ints beyond 64 bits...) through ``Publisher.put`` and a ``Consumer`` on the
memory broker (and on Postgres, for fewer examples), and compares what the
handler receives with what the documented rule says: the same value (a tuple
arriving as a list), or a ``SerializationError`` at put naming where.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskmaster_core import (
    ACK,
    Consumer,
    Job,
    JsonSerializer,
    MsgpackSerializer,
    PayloadValidationError,
    Publisher,
    QueueOptions,
    SerializationError,
)
from taskmaster_core._cli import main
from taskmaster_core.testing import Harness
from taskmaster_memory import MemoryBroker

SERIALIZERS = ["json", "msgpack"]
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


class Pipe:
    """Put one payload, run it through a consumer, return what the handler got."""

    def __init__(self, broker: Any, queue: str = "fidelity") -> None:
        self.queue = queue
        self.publisher = Publisher(broker)
        self.received: list[Any] = []
        self.consumer = Consumer(broker, queue, self._handle)

    def _handle(self, job: Job) -> Any:
        self.received.append(job.payload)
        return ACK

    def round_trip(self, payload: Any, serializer: str) -> Any:
        self.consumer.drain()  # what a failed example may have left behind
        self.received.clear()
        self.publisher.put(self.queue, payload, serializer=serializer)
        assert self.consumer.drain(raise_errors=True) == 1
        (got,) = self.received
        return got


@pytest.fixture(scope="module")
def memory_pipe() -> Iterator[Pipe]:
    with MemoryBroker() as broker:
        yield Pipe(broker)


@pytest.fixture(scope="module")
def pg_pipe(make_pg_harness_module: Callable[..., Harness]) -> Pipe:
    return Pipe(make_pg_harness_module().broker)


# -- the documented rule, restated independently of the implementation -------


class Refused(Exception):
    """The rule says put must refuse; ``pattern`` finds where in the message."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def _at(where: str) -> str:
    return re.escape(f"{where} (")


def expected(value: Any, fmt: str, where: str = "payload") -> Any:
    """What the consumer must receive for ``value`` put with ``fmt``."""
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        if fmt == "msgpack" and not INT64_MIN <= value <= UINT64_MAX:
            raise Refused(_at(where))
        return value
    if kind is float:
        if fmt == "json" and not math.isfinite(value):
            raise Refused(_at(where))
        return value
    if kind is bytes and fmt == "msgpack":
        return value
    if kind is dt.datetime and fmt == "msgpack" and value.tzinfo is dt.UTC:
        return value
    if kind is list or kind is tuple:
        return [expected(v, fmt, f"{where}[{i!r}]") for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for k, v in value.items():
            key = expected_key(k, fmt, where, k)  # a key is checked before its value
            out[key] = expected(v, fmt, f"{where}[{k!r}]")
        return out
    raise Refused(_at(where))


def expected_key(key: Any, fmt: str, where: str, whole: Any) -> Any:
    kind = type(key)
    if kind is str:
        return key
    if fmt == "msgpack":
        if key is None or kind in (bool, float, bytes):
            return key
        if kind is int and INT64_MIN <= key <= UINT64_MAX:
            return key
        if kind is tuple:  # map keys come back as tuples, not lists
            return tuple(expected_key(part, fmt, where, whole) for part in key)
        if kind is dt.datetime and key.tzinfo is dt.UTC:
            return key
    raise Refused(re.escape(f"the key {whole!r} (") + r".*\) in " + re.escape(where) + "[ :]")


def same(got: Any, want: Any) -> bool:
    """Equal, of the same types, NaN equal to NaN, -0.0 not equal to 0.0,
    dict items in the same order, datetimes with the same tzinfo."""
    if type(got) is not type(want):
        return False
    if isinstance(want, float):
        if math.isnan(want):
            return math.isnan(got)
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    if isinstance(want, list | tuple):
        return len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return len(got) == len(want) and all(
            same(gk, wk) and same(gv, wv)
            for (gk, gv), (wk, wv) in zip(got.items(), want.items(), strict=True)
        )
    if isinstance(want, dt.datetime):
        return bool(got == want and got.tzinfo == want.tzinfo)
    return bool(got == want)


def check(pipe: Pipe, value: Any, fmt: str) -> None:
    try:
        want, where = expected(value, fmt), None
    except Refused as refused:
        want, where = None, refused.pattern
    if where is None:
        event(f"{fmt}: round-tripped")
        got = pipe.round_trip(value, fmt)
        assert same(got, want), (value, got, want)
        return
    event(f"{fmt}: refused")
    with pytest.raises(SerializationError) as info:
        pipe.publisher.put(pipe.queue, value, serializer=fmt)
    message = str(info.value)
    assert message.startswith(f"{fmt} cannot "), message
    assert re.search(where, message), (where, message)


# -- what hypothesis puts -------------------------------------------------------


class Tag(msgspec.Struct, frozen=True):
    name: str


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


offsets = st.sampled_from([None, dt.UTC, PLUS_TWO])
ints = st.integers() | st.sampled_from(
    [INT64_MIN - 1, INT64_MIN, 2**63, UINT64_MAX, UINT64_MAX + 1, 10**40, -(10**40)]
)
plain = (
    st.none()
    | st.booleans()
    | ints
    | st.floats()  # with NaN, infinities and -0.0
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
changed = (
    st.binary(max_size=4).map(bytearray)
    | st.datetimes(timezones=offsets)
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.sampled_from([Color.RED, Level.LOW])
    | st.frozensets(st.integers(0, 3), max_size=2)
    | st.sets(st.integers(0, 3), max_size=2)
)
simple_keys = (
    st.text(max_size=4)
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=False)
    | st.none()
    | st.booleans()
    | st.binary(max_size=4)
    | st.datetimes(timezones=offsets)
    | st.uuids()
)
keys = st.one_of(
    st.text(max_size=4),
    st.text(max_size=4),
    simple_keys,
    st.tuples(simple_keys, simple_keys),
    st.frozensets(st.integers(0, 3), max_size=2),
)
payloads = st.recursive(
    st.one_of(plain, plain, plain, changed),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("fmt", SERIALIZERS)
@settings(max_examples=400, deadline=None)
@given(value=payloads)
def test_a_payload_comes_back_as_put_or_is_refused_at_put(
    memory_pipe: Pipe, fmt: str, value: Any
) -> None:
    check(memory_pipe, value, fmt)


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", SERIALIZERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=payloads)
def test_a_payload_comes_back_as_put_or_is_refused_at_put_on_postgres(
    pg_pipe: Pipe, fmt: str, value: Any
) -> None:
    check(pg_pipe, value, fmt)


# -- the cases of the issue, message by message -----------------------------------


@pytest.mark.parametrize(
    ("fmt", "payload", "message"),
    [
        (
            "json",
            {"b": b"\x00\x01"},
            "json cannot carry payload['b'] (bytes) faithfully: it would arrive as a base64 "
            "string; use the msgpack serializer or declare a payload type",
        ),
        ("json", {"b": [1, 2, b"\x00"]}, "payload['b'][2] (bytes)"),
        (
            "json",
            {"a": math.nan},
            "json cannot carry payload['a'] (float nan) faithfully: it "
            "would arrive as null; use the msgpack serializer",
        ),
        ("json", [1e400], "payload[0] (float inf)"),
        ("json", {1: "one"}, "the key 1 (int) in payload faithfully: it would arrive as a str key"),
        ("json", {"at": dt.datetime(2026, 1, 1)}, "payload['at'] (datetime)"),
        ("json", {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "payload['at'] (datetime)"),
        ("msgpack", {"at": dt.datetime(2026, 1, 1)}, "it would arrive as a string"),
        ("msgpack", {"at": dt.datetime(2026, 1, 1, tzinfo=PLUS_TWO)}, "a datetime in UTC"),
        ("json", {"id": uuid.UUID(int=1)}, "payload['id'] (UUID) faithfully"),
        ("msgpack", {"id": uuid.UUID(int=1)}, "payload['id'] (UUID) faithfully"),
        ("msgpack", {"n": 2**64}, "msgpack cannot encode payload['n'] (int of 65 bits)"),
        ("json", {"tags": {"a"}}, "payload['tags'] (set) faithfully: it would arrive as a list"),
        (
            "json",
            {"level": Level.LOW},
            "payload['level'] (Level) faithfully: it would arrive as its value 1",
        ),
        ("msgpack", {"price": decimal.Decimal("1.5")}, "payload['price'] (Decimal)"),
        (
            "msgpack",
            {"b": bytearray(b"x")},
            "payload['b'] (bytearray) faithfully: it would arrive as bytes",
        ),
        ("json", object(), "json cannot encode payload (object)"),
        (
            "msgpack",
            {"k": {Tag("a"): 1}},
            "msgpack cannot encode the key Tag(name='a') (Tag) "
            "in payload['k']: a map key is plain data",
        ),
    ],
)
def test_what_a_serializer_would_change_is_refused_at_put_naming_where(
    memory_pipe: Pipe, fmt: str, payload: Any, message: str
) -> None:
    with pytest.raises(SerializationError) as info:
        memory_pipe.publisher.put(memory_pipe.queue, payload, serializer=fmt)
    assert message in str(info.value)
    assert memory_pipe.consumer.drain() == 0  # nothing was stored


@pytest.mark.parametrize(
    ("fmt", "payload", "arrives_as"),
    [
        ("json", {"point": (1, 2)}, {"point": [1, 2]}),  # the one JSON equivalent
        ("msgpack", {"point": (1, 2)}, {"point": [1, 2]}),
        ("json", {"big": 2**80, "neg": -(2**70)}, {"big": 2**80, "neg": -(2**70)}),
        ("msgpack", {"b": b"\x00\x01", 1: math.inf}, {"b": b"\x00\x01", 1: math.inf}),
        ("msgpack", {(1, b"k"): None}, {(1, b"k"): None}),
        (
            "msgpack",
            {"at": dt.datetime(2026, 1, 1, 12, 30, 0, 123456, tzinfo=dt.UTC)},
            {"at": dt.datetime(2026, 1, 1, 12, 30, 0, 123456, tzinfo=dt.UTC)},
        ),
    ],
)
def test_what_comes_back_unchanged_or_as_a_documented_equivalent_is_accepted(
    memory_pipe: Pipe, fmt: str, payload: Any, arrives_as: Any
) -> None:
    assert same(memory_pipe.round_trip(payload, fmt), arrives_as)


def test_msgpack_carries_nan() -> None:
    with MemoryBroker() as broker:
        got = Pipe(broker).round_trip({"x": math.nan}, "msgpack")
    assert math.isnan(got["x"])


# -- the command line: its JSON parser reads NaN and 1e400 ----------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [('{"a": NaN}', "payload['a'] (float nan)"), ('{"a": [1e400]}', "payload['a'][0] (float inf)")],
)
def test_taskmaster_put_refuses_nan_and_infinity_with_json(
    capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    assert main(["--url", "memory://", "put", "q", text]) != 0
    assert f"json cannot carry {where} faithfully" in capsys.readouterr().err
    assert main(["--url", "memory://", "put", "q", text, "--serializer", "msgpack"]) == 0


# -- typed payloads round-trip by their type ------------------------------------


class Event(msgspec.Struct):
    at: dt.datetime
    id: uuid.UUID
    blob: bytes
    tags: tuple[str, ...]
    score: float = 0.0


@dataclasses.dataclass
class Box:
    when: dt.date
    extra: Any = None


def an_event() -> Event:
    return Event(
        at=dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC),
        id=uuid.UUID(int=7),
        blob=b"\x00\xff",
        tags=("a", "b"),
    )


def typed_pipe(broker: MemoryBroker, queue: str, payload_type: Any, declared: bool) -> Pipe:
    pipe = Pipe(broker, queue)
    if declared:
        pipe.publisher = Publisher(broker, queues={queue: QueueOptions(payload_type=payload_type)})
    pipe.consumer = Consumer(broker, queue, pipe._handle, payload_type=payload_type)
    return pipe


@pytest.mark.parametrize("fmt", SERIALIZERS)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "not-declared"])
def test_structs_and_dataclasses_round_trip_by_their_class(fmt: str, declared: bool) -> None:
    with MemoryBroker() as broker:
        events = typed_pipe(broker, "events", Event, declared)
        assert events.round_trip(an_event(), fmt) == an_event()
        boxes = typed_pipe(broker, "boxes", Box, declared)
        assert boxes.round_trip(Box(dt.date(2026, 2, 3), [1, "x"]), fmt) == Box(
            dt.date(2026, 2, 3), [1, "x"]
        )


@pytest.mark.parametrize("fmt", SERIALIZERS)
def test_a_dict_of_the_declared_shape_may_hold_what_the_type_restores(fmt: str) -> None:
    event = an_event()
    as_dict = {"at": event.at, "id": event.id, "blob": event.blob, "tags": ["a", "b"]}
    with MemoryBroker() as broker:
        assert typed_pipe(broker, "events", Event, declared=True).round_trip(as_dict, fmt) == event


@pytest.mark.parametrize("fmt", SERIALIZERS)
def test_a_struct_inside_an_untyped_payload_round_trips_by_its_class(fmt: str) -> None:
    with MemoryBroker() as broker:
        pipe = typed_pipe(broker, "events", dict[str, Event], declared=False)
        assert pipe.round_trip({"first": an_event()}, fmt) == {"first": an_event()}


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "not-declared"])
def test_a_field_typed_any_is_checked_too(declared: bool) -> None:
    with MemoryBroker() as broker:
        pipe = typed_pipe(broker, "boxes", Box, declared)
        box = Box(dt.date(2026, 2, 3), extra={"raw": b"\x00"})
        with pytest.raises(SerializationError, match=r"json cannot carry payload \(Box\)"):
            pipe.publisher.put("boxes", box)
        assert pipe.round_trip(box, "msgpack") == box


def test_a_datetime_field_keeps_its_utc_offset_or_is_refused() -> None:
    event = an_event()
    event.at = dt.datetime(2026, 1, 1, 9, 0, tzinfo=PLUS_TWO)
    with MemoryBroker() as broker:
        pipe = typed_pipe(broker, "events", Event, declared=False)
        assert pipe.round_trip(event, "json").at.utcoffset() == dt.timedelta(hours=2)
        with pytest.raises(SerializationError, match=r"msgpack cannot carry payload \(Event\)"):
            pipe.publisher.put("events", event, serializer="msgpack")  # it would arrive in UTC


def test_nan_in_a_float_field_is_refused_by_json_and_carried_by_msgpack() -> None:
    event = an_event()
    event.score = math.nan
    with MemoryBroker() as broker:
        pipe = typed_pipe(broker, "events", Event, declared=False)
        with pytest.raises(PayloadValidationError, match=r"payload \(Event\).*\$\.score"):
            pipe.publisher.put("events", event)
        assert math.isnan(pipe.round_trip(event, "msgpack").score)


def test_the_serializers_themselves_refuse() -> None:
    # dumps is where the rule lives: anyone calling a built-in serializer gets it.
    with pytest.raises(SerializationError, match=r"json cannot carry payload\['b'\] \(bytes\)"):
        JsonSerializer().dumps({"b": b"x"})
    with pytest.raises(SerializationError, match=r"msgpack cannot carry payload\[0\] \(UUID\)"):
        MsgpackSerializer().dumps([uuid.UUID(int=1)])
