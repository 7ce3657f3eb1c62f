"""Python side of RemoteData: a pointer to a file in the cluster's data catalog.

A RemoteData argument arrives with its file already on this host. Python may also make one,
`RemoteData(obj=x).save()`, which stores it through this node (never through Redis) and
returns to the client as a pointer it can pass to later calls.
"""
import http.client
import io
import json
import mmap
import os
import pickle
import urllib.parse
import uuid
from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence, Tuple

from . import arrays

FORMATS = ("msgpack", "json", "pickle", "raw", "ndarray")

# url -> (local path, fmt, checksum) of the running call's RemoteData arguments; set by the executor.
_call_data: Dict[str, Tuple[str, str, str]] = {}

# Objects obj() decoded, by (url, checksum), newest last, with the bytes each counts for: later
# calls on this interpreter get the same object without reading or decoding the file again.
_decoded: "OrderedDict[Tuple[str, str], Tuple[Any, int]]" = OrderedDict()


def set_call_data(data: Dict[str, Any]) -> None:
    _call_data.clear()
    _call_data.update({url: (path, fmt, checksum) for url, (path, fmt, checksum) in data.items()})


def _cache_budget() -> int:
    return int(float(os.environ.get("KS_DATA_CACHE_MB", "256")) * 1024 * 1024)


def _remember(key: Tuple[str, str], value: Any, size: int) -> None:
    """Keeps a decoded object, dropping the least recently used past the budget (--data-cache-mb)."""
    budget = _cache_budget()
    if size > budget:
        return
    _decoded[key] = (value, size)
    used = sum(entry[1] for entry in _decoded.values())
    while used > budget:
        _, (_, dropped) = _decoded.popitem(last=False)
        used -= dropped


class RemoteData:
    """Data held on the cluster, by its data url; or local data not saved yet."""

    def __init__(
        self,
        data_url: Optional[str] = None,
        obj: Any = None,
        raw: Optional[bytes] = None,
        local_path: Optional[str] = None,
        fmt: Optional[str] = None,
    ):
        self.data_url = data_url
        self._obj = obj
        self._raw = raw
        self._path = local_path
        self.fmt = fmt or ("raw" if obj is None else "ndarray" if arrays.is_numpy(obj) and hasattr(obj, "shape") else "msgpack")
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(FORMATS)}")
        if data_url is None and obj is None and raw is None and local_path is None:
            raise ValueError("RemoteData needs data_url, obj, raw or local_path")

    def __repr__(self) -> str:
        return f"RemoteData({self.data_url!r})" if self.data_url else f"RemoteData(<unsaved {self.fmt}>)"

    def local_path(self) -> str:
        """Path of the file on this host."""
        if self._path:
            return self._path
        if self.data_url in _call_data:
            return _call_data[self.data_url][0]
        if self.data_url:
            for root in (os.environ.get("KS_MEMORY_DATA"), os.path.join(os.environ["KS_DATADIR"], "data")):
                path = os.path.join(root, self.data_url) if root else ""
                if path and os.path.exists(path):
                    return path
            raise FileNotFoundError(f"data {self.data_url!r} is not on this host; pass it as a call argument to have it copied here")
        raise ValueError("this RemoteData holds an object, not a file")

    def raw(self) -> bytes:
        if self._raw is not None:
            return self._raw
        if self._obj is not None and not self.data_url:
            return self._serialize()
        with open(self.local_path(), "rb") as f:
            return f.read()

    def buffer(self) -> memoryview:
        """The bytes as a read-only memoryview of the mapped file: no copy, however big."""
        if self._raw is not None or (self._obj is not None and not self.data_url):
            return memoryview(self.raw())
        with open(self.local_path(), "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))

    def array(self, dtype: Any, shape: Optional[Sequence[int]] = None) -> Any:
        """A read-only numpy array over the mapped file's bytes (no copy): raw elements of `dtype`."""
        import numpy as np

        view = self.buffer()
        kind = np.dtype(dtype)
        if view.nbytes % kind.itemsize:
            raise ValueError(f"data {self.data_url!r} holds {view.nbytes} bytes, not a whole number of {kind} items ({kind.itemsize} bytes each)")
        count = view.nbytes // kind.itemsize
        if shape is not None and int(np.prod(shape)) != count:
            raise ValueError(f"shape {tuple(shape)} of {kind} needs {int(np.prod(shape)) * kind.itemsize} bytes; data {self.data_url!r} holds {view.nbytes}")
        return np.frombuffer(view, dtype=kind).reshape(tuple(shape) if shape is not None else (count,))

    def obj(self) -> Any:
        """The decoded value. A saved one is decoded once per interpreter and kept (by url and
        checksum, within --data-cache-mb) for later calls: msgpack, json and pickle objects are
        then shared between calls, so change a copy, not them; ndarray data is a read-only map
        of the file and raw data immutable bytes."""
        if self._obj is not None:
            return self._obj
        path, fmt, checksum = _call_data.get(self.data_url, ("", self.fmt, "")) if self.data_url else ("", self.fmt, "")
        key = (self.data_url or "", checksum)
        if checksum and key in _decoded:
            _decoded.move_to_end(key)
            return _decoded[key][0]
        value = self._decode(fmt)
        if checksum:
            # A mapped array takes no memory of its own; other objects count as their file's size.
            _remember(key, value, 0 if fmt == "ndarray" else os.path.getsize(path or self.local_path()))
        return value

    def _decode(self, fmt: str) -> Any:
        if fmt == "ndarray":
            import numpy as np

            return np.load(self.local_path(), mmap_mode="r", allow_pickle=False)
        body = self.raw()
        if fmt == "msgpack":
            from . import wire

            return wire.unpack(body)
        if fmt == "json":
            return json.loads(body)
        if fmt == "pickle":
            return pickle.loads(body)
        return body

    def _serialize(self) -> bytes:
        if self._raw is not None:
            return self._raw
        if self.fmt == "msgpack":
            from . import wire

            return wire.pack(self._obj)
        if self.fmt == "json":
            return json.dumps(self._obj).encode("utf-8")
        if self.fmt == "pickle":
            return pickle.dumps(self._obj)
        if self.fmt == "ndarray":
            import numpy as np

            out = io.BytesIO()
            np.save(out, np.ascontiguousarray(self._obj), allow_pickle=False)
            return out.getvalue()
        if isinstance(self._obj, (bytes, bytearray, memoryview)):
            return bytes(self._obj)
        raise TypeError("fmt 'raw' needs bytes")

    def save(self, url: Optional[str] = None, prefix: str = "", memory: Optional[bool] = None) -> "RemoteData":
        """Stores the data on this node under `url` (default: `prefix` + a random name).

        `memory=True` keeps it in the node's memory tier: not fsynced, lost when the node stops.
        """
        if self.data_url:
            return self
        url = url or f"{prefix}{uuid.uuid4().hex}"
        query = f"?fmt={self.fmt}" + ("" if memory is None else f"&memory={int(bool(memory))}")
        node = urllib.parse.urlsplit(os.environ["KS_NODE_LOCAL_URL"])
        path = node.path.rstrip("/") + "/api/v1/data/" + "/".join(urllib.parse.quote(s, safe="") for s in url.split("/"))
        headers = {"content-type": "application/octet-stream"}
        if os.environ.get("KS_NODE_TOKEN"):
            headers["authorization"] = f"Bearer {os.environ['KS_NODE_TOKEN']}"
        connection = http.client.HTTPConnection(node.hostname, node.port, timeout=300)
        try:
            if self._path:
                headers["content-length"] = str(os.path.getsize(self._path))
                with open(self._path, "rb") as body:
                    connection.request("PUT", path + query, body=body, headers=headers)
                    answer = connection.getresponse()
            else:
                connection.request("PUT", path + query, body=self._serialize(), headers=headers)
                answer = connection.getresponse()
            text = answer.read().decode("utf-8", "replace")
        finally:
            connection.close()
        if answer.status != 201:
            raise RuntimeError(f"saving data {url!r} failed: {answer.status} {text}")
        self.data_url = url
        return self
