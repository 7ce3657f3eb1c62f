"""msgpack as the TypeScript client speaks it: bytes as bin, RemoteData as ext 1,
numpy arrays as ext 2 holding [dtype, shape, bytes] (see arrays.py)."""
from typing import Any, List, Optional

import msgpack

from . import arrays
from .remote_data import RemoteData

REMOTE_DATA_EXT = 1
TAILED_PAYLOAD = b"\xc1"


class UnsendableValue(TypeError):
    """A value msgpack cannot carry; names its Python type."""


def _default(value: Any, splice: Optional[arrays.Splice] = None) -> Any:
    if isinstance(value, int):
        raise OverflowError  # only ints beyond 64 bits reach here
    if isinstance(value, RemoteData):
        # An unsaved RemoteData is saved on this node on its way out: the client gets a pointer.
        return msgpack.ExtType(REMOTE_DATA_EXT, value.save().data_url.encode("utf-8"))
    if isinstance(value, (set, frozenset)):
        return list(value)
    if arrays.is_numpy(value):
        import numpy as np

        if isinstance(value, np.ndarray):
            return arrays.ndarray_ext(value, splice)
        if isinstance(value, np.generic):
            return value.item()
    if arrays.is_pandas(value):
        try:
            converted = arrays.pandas_value(value)
        except ValueError as error:
            raise UnsendableValue(f"{type(value).__module__}.{type(value).__qualname__} ({error})") from None
        if converted is not None:
            return converted
    raise UnsendableValue(f"{type(value).__module__}.{type(value).__qualname__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == REMOTE_DATA_EXT:
        return RemoteData(data_url=data.decode("utf-8"))
    if code == arrays.NDARRAY_EXT:
        return arrays.ndarray_from_ext(data)
    return msgpack.ExtType(code, data)


def pack(value: Any, splice: Optional[arrays.Splice] = None) -> bytes:
    """Packs a value for the client, or raises UnsendableValue naming what could not be sent.

    With `splice`, big arrays are left as placeholders for `splice.pieces()` to fill in.
    """
    default = _default if splice is None else lambda item: _default(item, splice)
    try:
        return msgpack.packb(value, default=default, use_bin_type=True, datetime=False)
    except UnsendableValue as error:
        raise UnsendableValue(
            f"cannot send a value of type {error} back to the client; "
            "return plain data (numbers, str, bytes, lists, dicts, numpy arrays, DataFrames) "
            "or save it with kitchensink.RemoteData(obj=...).save() and return that"
        ) from None
    except OverflowError:
        raise UnsendableValue(
            "cannot send an int beyond 64 bits back to the client; return it as str"
        ) from None


def pack_pieces(value: Any) -> List[Any]:
    """The packed value as buffers to write one after the other; big arrays are not copied."""
    splice = arrays.Splice()
    return splice.pieces(pack(value, splice))


def unpack(body: Any) -> Any:
    """A payload: msgpack, or (first byte 0xc1) msgpack whose big arrays follow it.

    The second form is [0xc1, msgpack length (4 bytes, big-endian), msgpack, the arrays], each
    array at a multiple of 64 from the payload's start and named in the msgpack by an ext 3
    `[dtype, shape, offset, nbytes]` (offset from the first multiple of 64 after the msgpack).
    msgpack copies an ext's bytes into a new `bytes`; numpy views these where they arrived.
    """
    if body[:1] != TAILED_PAYLOAD:
        return msgpack.unpackb(body, raw=False, ext_hook=_ext_hook, strict_map_key=False)
    payload = memoryview(body)
    end = 5 + int.from_bytes(payload[1:5], "big")
    if end > len(payload):
        raise ValueError(f"a payload says its msgpack is {end - 5} bytes, but it holds {len(payload) - 5}")
    tail = payload[end + (-end % 64) :]

    def ext_hook(code: int, data: bytes) -> Any:
        return arrays.ndarray_from_tail(data, tail) if code == arrays.TAILED_ARRAY_EXT else _ext_hook(code, data)

    return msgpack.unpackb(payload[5:end], raw=False, ext_hook=ext_hook, strict_map_key=False)
