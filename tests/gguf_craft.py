"""Hostile GGUF files for tests: a GGUF v3 header rewriter (the report's Appendix C, typed).

`with_metadata(src, out, {key: value})` copies `src` with string metadata values replaced or added:
it parses the header's key-value pairs and tensor infos, rebuilds the header, pads it to
`general.alignment`, and appends the original tensor data unchanged. Write only under tmp_path.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["with_metadata"]

_STRING, _ARRAY = 8, 9
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, offset: int, kind: int) -> int:
    """The offset just past one value of type `kind`."""
    if kind == _STRING:
        (length,) = struct.unpack_from("<Q", data, offset)
        return offset + 8 + length
    if kind == _ARRAY:
        item_kind, count = struct.unpack_from("<IQ", data, offset)
        offset += 12
        if item_kind in _SIZES:
            return offset + count * _SIZES[item_kind]
        for _ in range(count):
            offset = _skip_value(data, offset, item_kind)
        return offset
    return offset + _SIZES[kind]


def _string(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


def with_metadata(src: Path, out: Path, strings: dict[str, str]) -> Path:
    """`src` rewritten to `out` with these string metadata values (replaced, or appended if new)."""
    data = src.read_bytes()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"GGUF" and version == 3, "not a GGUF v3 file"
    offset, pairs, alignment = 24, [], 32
    for _ in range(n_kv):
        (key_length,) = struct.unpack_from("<Q", data, offset)
        key = data[offset + 8 : offset + 8 + key_length].decode()
        start = offset
        (kind,) = struct.unpack_from("<I", data, offset + 8 + key_length)
        value_at = offset + 12 + key_length
        offset = _skip_value(data, value_at, kind)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, value_at)
        if key not in strings:
            pairs.append(data[start:offset])
    for key, value in strings.items():
        pairs.append(_string(key.encode()) + struct.pack("<I", _STRING) + _string(value.encode()))
    tensors_at = offset
    for _ in range(n_tensors):
        (name_length,) = struct.unpack_from("<Q", data, offset)
        offset += 8 + name_length
        (n_dims,) = struct.unpack_from("<I", data, offset)
        offset += 4 + 8 * n_dims + 4 + 8  # dims, type, data offset
    tensor_data = data[(offset + alignment - 1) // alignment * alignment :]
    header = struct.pack("<4sIQQ", magic, version, n_tensors, len(pairs)) + b"".join(pairs)
    header += data[tensors_at:offset]
    out.write_bytes(header + b"\0" * (-len(header) % alignment) + tensor_data)
    return out
