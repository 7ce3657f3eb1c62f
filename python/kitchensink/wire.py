"""msgpack as the TypeScript client speaks it: bytes as bin, RemoteData as ext 1,
numpy arrays as ext 2 holding [dtype, shape, bytes]."""
from typing import Any

import msgpack

from .remote_data import RemoteData

REMOTE_DATA_EXT = 1
NDARRAY_EXT = 2


class UnsendableValue(TypeError):
    """A value msgpack cannot carry; names its Python type."""


def _default(value: Any) -> Any:
    if isinstance(value, int):
        raise OverflowError  # only ints beyond 64 bits reach here
    if isinstance(value, RemoteData):
        # An unsaved RemoteData is saved on this node on its way out: the client gets a pointer.
        return msgpack.ExtType(REMOTE_DATA_EXT, value.save().data_url.encode("utf-8"))
    if isinstance(value, (set, frozenset)):
        return list(value)
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            if array.dtype.hasobject:
                return array.tolist()
            body = msgpack.packb([array.dtype.str, list(array.shape), array.tobytes()], use_bin_type=True)
            return msgpack.ExtType(NDARRAY_EXT, body)
        if isinstance(value, np.generic):
            return value.item()
    raise UnsendableValue(f"{type(value).__module__}.{type(value).__qualname__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == REMOTE_DATA_EXT:
        return RemoteData(data_url=data.decode("utf-8"))
    if code == NDARRAY_EXT:
        dtype, shape, body = msgpack.unpackb(data, raw=False)
        try:
            import numpy as np
        except ImportError:
            return {"dtype": dtype, "shape": shape, "data": body}
        return np.frombuffer(body, dtype=np.dtype(dtype)).reshape(shape)
    return msgpack.ExtType(code, data)


def pack(value: Any) -> bytes:
    """Packs a value for the client, or raises UnsendableValue naming what could not be sent."""
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)
    except UnsendableValue as error:
        raise UnsendableValue(
            f"cannot send a value of type {error} back to the client; "
            "return plain data (numbers, str, bytes, lists, dicts, numpy arrays) "
            "or save it with kitchensink.RemoteData(obj=...).save() and return that"
        ) from None
    except OverflowError:
        raise UnsendableValue(
            "cannot send an int beyond 64 bits back to the client; return it as str"
        ) from None


def unpack(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False, ext_hook=_ext_hook, strict_map_key=False)
