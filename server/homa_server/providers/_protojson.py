"""Conversion between `google.protobuf.Struct`/`Value` and plain Python (JSON-ready) values.

Protobuf stores every JSON number as a double, so `{"maxItems": 3}` comes back from
`json_format.MessageToDict` as `3.0`. JSON Schemas and vendor APIs care about that difference
(`"maxItems": 3.0` is rejected by some validators), so integral doubles come back as `int` here.
Doubles that are not integral, or too large to be exact (beyond 2**53), stay `float`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from google.protobuf import struct_pb2

__all__ = ["cached_struct_to_dict", "dict_to_struct", "python_to_value", "struct_to_dict", "value_to_python"]

_MAX_EXACT = 2**53  # every integer up to this magnitude is exactly representable as a double


def value_to_python(value: struct_pb2.Value) -> Any:
    """Convert a `Value` to None, bool, int, float, str, list or dict (recursively).

    An unset `Value` (no kind) becomes None, like JSON null.
    """
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -_MAX_EXACT <= number <= _MAX_EXACT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Convert a `Struct` to a dict with plain values (see `value_to_python`)."""
    return {key: value_to_python(item) for key, item in struct.fields.items()}


def cached_struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """`struct_to_dict`, memoised on the Struct's content; the result is shared, never mutate it.

    Tool parameter schemas and response schemas repeat across requests (agent loops send the same
    tools every turn); converting them costs about 1 us per JSON node, a cache hit about 1 us in
    total (deterministic serialisation plus a lookup).
    """
    return _dict_from_bytes(struct.SerializeToString(deterministic=True))


@lru_cache(maxsize=256)
def _dict_from_bytes(data: bytes) -> dict[str, Any]:
    struct = struct_pb2.Struct()
    struct.ParseFromString(data)
    return struct_to_dict(struct)


def python_to_value(obj: Any, value: struct_pb2.Value | None = None) -> struct_pb2.Value:
    """Convert a JSON-ready Python value into a `Value` (filled in place when `value` is given).

    Raises:
        TypeError: `obj` (or something inside it) is not None, bool, int, float, str, a mapping with
            string keys, or a sequence.
        ValueError: a float is NaN or infinite (not representable in JSON).
    """
    target = struct_pb2.Value() if value is None else value
    if obj is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):  # before int: bool is an int subclass
        target.bool_value = obj
    elif isinstance(obj, int | float):
        number = float(obj)
        if not math.isfinite(number):
            raise ValueError(f"{obj!r} is not a JSON number")
        target.number_value = number
    elif isinstance(obj, str):
        target.string_value = obj
    elif isinstance(obj, Mapping):
        struct = target.struct_value
        struct.SetInParent()  # selects struct_value even when `obj` is empty
        dict_to_struct(obj, struct)
    elif isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        items = target.list_value
        items.SetInParent()  # selects list_value even when `obj` is empty
        del items.values[:]
        for item in obj:
            python_to_value(item, items.values.add())
    else:
        raise TypeError(f"cannot convert {type(obj).__name__} to google.protobuf.Value")
    return target


def dict_to_struct(obj: Mapping[str, Any], struct: struct_pb2.Struct | None = None) -> struct_pb2.Struct:
    """Convert a mapping with string keys into a `Struct` (filled in place when `struct` is given).

    Raises:
        TypeError, ValueError: as `python_to_value`.
    """
    target = struct_pb2.Struct() if struct is None else struct
    fields = target.fields
    fields.clear()
    for key, item in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"Struct keys must be str, not {type(key).__name__}")
        python_to_value(item, fields[key])
    return target
