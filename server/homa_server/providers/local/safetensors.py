"""A numpy reader for the safetensors format (no torch, no pickle: nothing in the file is executed).

Format: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
`{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the end of the header),
then the raw little-endian tensor bytes. The file is memory-mapped; returned arrays are read-only
views into it, so loading costs no copy until a caller copies.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["SafetensorsError", "read_safetensors"]

_DTYPES: dict[str, str] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file."""


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Map every tensor of `path` to a read-only numpy array (memory-mapped).

    Raises:
        SafetensorsError: truncated file, oversized or malformed header, unknown dtype, or a tensor
            whose byte range does not match its shape or lies outside the file.
        OSError: the file cannot be read.
    """
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if raw.size < 8:
        raise SafetensorsError(f"{path.name}: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", raw[:8].tobytes())
    if header_len > _MAX_HEADER or 8 + header_len > raw.size:
        raise SafetensorsError(f"{path.name}: header length {header_len} is out of bounds")
    try:
        header = json.loads(raw[8 : 8 + header_len].tobytes())
    except ValueError as exc:
        raise SafetensorsError(f"{path.name}: header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: header is not a JSON object")
    body = raw[8 + header_len :]
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(path.name, name, entry, body)
    return tensors


def _tensor(file: str, name: str, entry: object, body: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{file}: {name}: entry is not an object")
    dtype = _DTYPES.get(str(entry.get("dtype")))
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if dtype is None:
        raise SafetensorsError(f"{file}: {name}: unsupported dtype {entry.get('dtype')!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise SafetensorsError(f"{file}: {name}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise SafetensorsError(f"{file}: {name}: bad data_offsets {offsets!r}")
    begin, end = offsets
    itemsize = np.dtype(dtype).itemsize
    if not 0 <= begin <= end <= body.size or end - begin != math.prod(shape) * itemsize:
        raise SafetensorsError(f"{file}: {name}: data_offsets {offsets} do not match shape {shape}")
    array = body[begin:end].view(dtype).reshape(shape)
    array.flags.writeable = False
    return array
