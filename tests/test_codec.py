"""Decoding bodies by annotation, and what a bad body reports (never its content)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from aiosqsq.codec import Decoder, PayloadError, encode


class Order(BaseModel):
    id: int
    sku: str


@dataclass
class Point:
    x: int
    y: int


def test_raw_annotations_get_the_body() -> None:
    assert Decoder.for_annotation(str).decode("héllo") == "héllo"
    assert Decoder.for_annotation(bytes).decode("héllo") == "héllo".encode()


def test_no_annotation_gets_parsed_json() -> None:
    for annotation in (inspect.Parameter.empty, Any, object):
        assert Decoder.for_annotation(annotation).decode('{"a": [1, 2]}') == {"a": [1, 2]}


def test_models_and_types_are_validated() -> None:
    assert Decoder.for_annotation(Order).decode('{"id": 1, "sku": "x"}') == Order(id=1, sku="x")
    assert Decoder.for_annotation(Point).decode('{"x": 1, "y": 2}') == Point(1, 2)
    assert Decoder.for_annotation(dict[str, int]).decode('{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("annotation", "body", "error_class"),
    [
        (Order, "not json SECRET", "JSONDecodeError"),
        (Order, '{"id": "SECRET", "sku": "x"}', "ValidationError"),
        (dict[str, int], "[" * 100_000, "JSONDecodeError"),  # hostile nesting
        (Any, "1" * 5000 + "SECRET", "JSONDecodeError"),
        (Order, "\ud800SECRET", "JSONDecodeError"),  # a lone surrogate: not UTF-8
    ],
)
def test_bad_bodies_raise_payload_error_without_their_content(
    annotation: Any, body: str, error_class: str
) -> None:
    with pytest.raises(PayloadError) as raised:
        Decoder.for_annotation(annotation).decode(body)
    assert raised.value.error_class == error_class
    assert "SECRET" not in str(raised.value)


def test_validation_reason_names_the_field() -> None:
    with pytest.raises(PayloadError) as raised:
        Decoder.for_annotation(Order).decode('{"id": "x"}')
    assert raised.value.reason.startswith("2 error(s): id: Input should be a valid integer")
    assert "sku: Field required" in raised.value.reason


def test_encode() -> None:
    assert encode("raw") == "raw"
    assert encode(b"raw") == "raw"
    assert encode(Order(id=1, sku="x")) == '{"id":1,"sku":"x"}'
    assert encode({"orders": [Order(id=2, sku="y")]}) == '{"orders":[{"id":2,"sku":"y"}]}'
    with pytest.raises(TypeError, match="cannot encode set as JSON"):
        encode({1, 2})


class Stripped(BaseModel):
    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip()  # AttributeError on an int: pydantic does not wrap it


class Looked(BaseModel):
    kind: str

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        return {"a": "alpha"}[value]  # KeyError on anything else


@dataclass
class Checked:
    size: int

    def __post_init__(self) -> None:
        if self.size > 10:
            raise TypeError(f"size {self.size} SECRET")


@pytest.mark.parametrize(
    ("annotation", "body", "error_class"),
    [
        (Stripped, '{"name": 5}', "AttributeError"),
        (Looked, '{"kind": "SECRET"}', "KeyError"),
        (Checked, '{"size": 11}', "TypeError"),
    ],
)
def test_any_exception_from_validation_is_a_bad_payload(
    annotation: Any, body: str, error_class: str
) -> None:
    """Validators that raise what pydantic does not wrap must not escape as a crash."""
    with pytest.raises(PayloadError) as raised:
        Decoder.for_annotation(annotation).decode(body)
    assert raised.value.error_class == error_class
    assert "SECRET" not in str(raised.value)
