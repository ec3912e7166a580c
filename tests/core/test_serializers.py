from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmaster_core import (
    JsonSerializer,
    MsgpackSerializer,
    PayloadValidationError,
    SerializationError,
    SerializerRegistry,
    UnknownSerializerError,
    new_plugin_manager,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_json_round_trips_any_json_value(value: Any) -> None:
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


@given(msgpack_values)
def test_msgpack_round_trips_any_value_including_bytes(value: Any) -> None:
    serializer = MsgpackSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


class Point(msgspec.Struct):
    x: int
    y: int
    label: str = ""


@dataclasses.dataclass
class Box:
    width: float
    tags: list[str]


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()], ids=str)
@given(x=st.integers(-(2**31), 2**31), y=st.integers(-(2**31), 2**31), label=st.text())
def test_typed_struct_round_trips(serializer: Any, x: int, y: int, label: str) -> None:
    point = Point(x, y, label)
    assert serializer.loads(serializer.dumps(point), Point) == point


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()], ids=str)
@given(width=st.floats(allow_nan=False, allow_infinity=False), tags=st.lists(st.text()))
def test_typed_dataclass_round_trips(serializer: Any, width: float, tags: list[str]) -> None:
    box = Box(width, tags)
    assert serializer.loads(serializer.dumps(box), Box) == box


@pytest.mark.parametrize("serializer", [JsonSerializer(), MsgpackSerializer()], ids=str)
def test_a_payload_of_the_wrong_shape_is_a_validation_error(serializer: Any) -> None:
    data = serializer.dumps({"x": 1, "y": "two"})
    with pytest.raises(PayloadValidationError, match=r"Point.*\$\.y"):
        serializer.loads(data, Point)


def test_undecodable_bytes_are_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="json cannot decode"):
        JsonSerializer().loads(b"{not json")
    with pytest.raises(SerializationError, match="msgpack cannot decode"):
        MsgpackSerializer().loads(b"\xc1")


def test_unencodable_payloads_are_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="json cannot encode"):
        JsonSerializer().dumps(object())


def test_registry_knows_the_builtins_and_names_unknown_ones() -> None:
    registry = SerializerRegistry(new_plugin_manager(load_entrypoints=False))
    assert registry.names() == ["json", "msgpack"]
    assert registry.get("json").name == "json"
    with pytest.raises(UnknownSerializerError, match=r"'yaml'.*json, msgpack"):
        registry.get("yaml")
