"""Python side of RemoteData: a pointer to a file in the cluster's data catalog.

A RemoteData argument arrives with its file already on this host. Python may also make one,
`RemoteData(obj=x).save()`, which stores it through this node (never through Redis) and
returns to the client as a pointer it can pass to later calls.
"""
import http.client
import json
import os
import pickle
import urllib.parse
import uuid
from typing import Any, Dict, Optional, Tuple

FORMATS = ("msgpack", "json", "pickle", "raw")

# url -> (local path, fmt) of the running call's RemoteData arguments; set by the executor.
_call_data: Dict[str, Tuple[str, str]] = {}


def set_call_data(data: Dict[str, Any]) -> None:
    _call_data.clear()
    _call_data.update({url: (entry[0], entry[1]) for url, entry in data.items()})


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
        self.fmt = fmt or ("msgpack" if obj is not None else "raw")
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
            path = os.path.join(os.environ["KS_DATADIR"], "data", self.data_url)
            if os.path.exists(path):
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

    def obj(self) -> Any:
        if self._obj is not None:
            return self._obj
        fmt = _call_data.get(self.data_url, (None, self.fmt))[1] if self.data_url else self.fmt
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
