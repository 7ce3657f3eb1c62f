"""numpy arrays and pandas frames on the wire (msgpack ext 2: [dtype, shape, bytes]).

An ndarray leaves as its dtype (numpy's `.str`, always little-endian), shape and C-order
bytes; the TypeScript client reads the bytes as a TypedArray view. An array from TypeScript
becomes a read-only ndarray over the received payload, without a copy. A DataFrame leaves
column by column, each numeric column an array and any other a list. numpy and pandas are
imported only when such a value is met, so nodes without them run everything else.
"""
import itertools
import os
import struct
from typing import Any, List, Optional

import msgpack

NDARRAY_EXT = 2
# An array from TypeScript whose bytes follow the payload's msgpack (see wire.unpack).
TAILED_ARRAY_EXT = 3
# Kinds that cross as bytes: bool, ints, floats, complex, datetime64, timedelta64.
_BINARY_KINDS = "biufcmM"


def is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy"


def is_pandas(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] == "pandas"


# Arrays this big are not copied into the packed value: they are written from their own memory.
SPLICE_BYTES = 1 << 20


def bin_header(size: int) -> bytes:
    """msgpack's header of a bin of `size` bytes."""
    if size < 256:
        return bytes([0xC4, size])
    if size < 65536:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _wire_ready(array: Any) -> Any:
    """The array as it crosses: little-endian and C-contiguous (copied only when it is not)."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:
        array = array.copy(order="C")
    return array


def _payload_head(array: Any) -> bytes:
    """An ext 2 payload up to its elements: a 3-element array's header, dtype, shape, bin header."""
    header = msgpack.packb([array.dtype.str, list(array.shape)], use_bin_type=True)
    return b"\x93" + header[1:] + bin_header(array.nbytes)


def _elements(array: Any) -> Any:
    """The array's bytes as a flat uint8 view (datetime arrays refuse the buffer protocol)."""
    import numpy as np

    return array.reshape(-1).view(np.uint8) if array.size else b""


# Where a big array's elements start, from the packed value's start: a multiple of this, so
# that TypeScript can view them as a TypedArray (which needs an offset its element size, at
# most 8, divides) instead of copying them. The node puts a direct call's value at byte 16
# of its answer.
ELEMENTS_ALIGN = 8


def _str_header_forms(n: int) -> List[bytes]:
    """Every msgpack header of a str of n (< 256) bytes, shortest first."""
    forms = [bytes([0xA0 | n])] if n < 32 else []
    return forms + [b"\xd9" + bytes([n]), b"\xda" + n.to_bytes(2, "big"), b"\xdb" + n.to_bytes(4, "big")]


def _uint_forms(value: int) -> List[bytes]:
    """Every msgpack encoding of a non-negative int, shortest first."""
    forms = [bytes([value])] if value < 128 else []
    for tag, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if value < 1 << (8 * width):
            forms.append(bytes([tag]) + value.to_bytes(width, "big"))
    return forms


def _array_header_forms(n: int) -> List[bytes]:
    forms = [bytes([0x90 | n])] if n < 16 else []
    return forms + [b"\xdc" + n.to_bytes(2, "big"), b"\xdd" + n.to_bytes(4, "big")]


def _aligned_head(array: Any, start: int) -> bytes:
    """An ext 2 payload up to its elements, starting at `start` in the packed value, written so
    that the elements begin at a multiple of ELEMENTS_ALIGN: msgpack reads a wider encoding of
    a string's length, an array's length or a number as the same value, so the dtype's, the
    shape's and the first dimension's encodings are widened as needed."""
    dtype = array.dtype.str.encode("utf-8")
    tail = b"".join(_uint_forms(d)[0] for d in array.shape[1:]) + bin_header(array.nbytes)
    heads = [
        b"\x93" + dtype_header + dtype + shape_header + first + tail
        for dtype_header, shape_header, first in itertools.product(
            _str_header_forms(len(dtype)), _array_header_forms(len(array.shape)), _uint_forms(array.shape[0]) if array.shape else [b""]
        )
    ]
    # The shortest head when none aligns (a 0-d array).
    return next((head for head in heads if (start + len(head)) % ELEMENTS_ALIGN == 0), heads[0])


class Splice:
    """Big arrays packed as 16-byte placeholders, then spliced back as pieces to write.

    Copying a 64 MB array into the packed value, then into the reply frame, cost 0.2 s per
    copy on a VM that faults fresh memory in slowly; written from its own memory, it costs none.
    """

    def __init__(self) -> None:
        self.marker = os.urandom(12)
        self.arrays: List[Any] = []

    def placeholder(self, array: Any) -> Any:
        self.arrays.append(array)
        return msgpack.ExtType(NDARRAY_EXT, self.marker + struct.pack(">I", len(self.arrays) - 1))

    def pieces(self, body: bytes) -> List[Any]:
        """The packed value as buffers to write in order, each big array's memory among them."""
        if not self.arrays:
            return [body]
        view = memoryview(body)
        pieces: List[Any] = []
        at = 0
        # Bytes of the value written so far, for where each array's elements start.
        written = 0
        for k, array in enumerate(self.arrays):
            # A fixext 16 of type 2 holding the marker and k, in packing (depth-first) order.
            tag = b"\xd8\x02" + self.marker + struct.pack(">I", k)
            found = body.index(tag, at)
            # After what precedes the placeholder and the ext 32 header (6 bytes).
            head = _aligned_head(array, written + (found - at) + 6)
            pieces += [view[at:found], b"\xc9" + (len(head) + array.nbytes).to_bytes(4, "big") + b"\x02", head, memoryview(_elements(array))]
            written += (found - at) + 6 + len(head) + array.nbytes
            at = found + len(tag)
        pieces.append(view[at:])
        return pieces


def ndarray_ext(array: Any, splice: Optional[Splice] = None) -> Any:
    """The ext 2 form of an ndarray; arrays of strings or objects leave as nested lists."""
    if array.dtype.kind not in _BINARY_KINDS:
        return array.tolist()
    array = _wire_ready(array)
    if splice is not None and array.nbytes >= SPLICE_BYTES:
        return splice.placeholder(array)
    return msgpack.ExtType(NDARRAY_EXT, b"".join((_payload_head(array), _elements(array))))


def ndarray_from_tail(ref: bytes, tail: memoryview) -> Any:
    """The array an ext 3 `[dtype, shape, offset, nbytes]` places in `tail` (the bytes after a
    payload's msgpack), viewing them read-only; a dict without numpy."""
    fields = msgpack.unpackb(ref, raw=False)
    if not (isinstance(fields, list) and len(fields) == 4 and all(isinstance(n, int) and n >= 0 for n in fields[2:])):
        raise ValueError("an array after the payload is [dtype, shape, offset, nbytes]")
    dtype, shape, offset, nbytes = fields
    if offset + nbytes > len(tail):
        raise ValueError(f"an array of {nbytes} bytes at {offset} lies beyond the payload's {len(tail)} bytes after its msgpack")
    try:
        import numpy as np
    except ImportError:
        return {"dtype": dtype, "shape": shape, "data": bytes(tail[offset : offset + nbytes])}
    kind = np.dtype(dtype)
    array = np.frombuffer(tail, dtype=kind, count=nbytes // kind.itemsize, offset=offset).reshape(shape)
    array.flags.writeable = False
    return array


def ndarray_from_ext(data: bytes) -> Any:
    """The ndarray that an ext 2 payload holds, viewing `data`; a dict without numpy."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    if unpacker.read_array_header() != 3:
        raise ValueError("an ndarray payload is [dtype, shape, bytes]")
    dtype, shape = unpacker.unpack(), unpacker.unpack()
    offset = unpacker.tell()
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}.get(data[offset])
    if width is None:
        raise ValueError("an ndarray payload's third item must be bytes")
    size = int.from_bytes(data[offset + 1 : offset + 1 + width], "big")
    start = offset + 1 + width
    try:
        import numpy as np
    except ImportError:
        return {"dtype": dtype, "shape": shape, "data": data[start : start + size]}
    kind = np.dtype(dtype)
    return np.frombuffer(data, dtype=kind, count=size // kind.itemsize, offset=start).reshape(shape)


def _column(values: Any) -> Any:
    """A Series or Index as an ndarray when numpy holds it plainly, else as a list (None for missing)."""
    import numpy as np

    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in _BINARY_KINDS:
        return values.to_numpy()
    plain = values.astype(object)
    return [None if _missing(item) else item for item in plain.tolist()]


def _missing(item: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(item))
    except (TypeError, ValueError):  # a list or array in a cell
        return False


def pandas_value(value: Any) -> Any:
    """A DataFrame as {columns, index, data}, a Series as {name, index, data}; None otherwise."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        columns = [str(name) for name in value.columns]
        if len(set(columns)) != len(columns):
            raise ValueError("a DataFrame with repeated column names cannot be sent: rename them")
        data = {name: _column(value.iloc[:, k]) for k, name in enumerate(columns)}
        return {"columns": columns, "index": _column(value.index), "data": data}
    if isinstance(value, pd.Series):
        name = None if value.name is None else str(value.name)
        return {"name": name, "index": _column(value.index), "data": _column(value)}
    if isinstance(value, pd.Index):
        return _column(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return None
