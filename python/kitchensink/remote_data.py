"""Python side of RemoteData: a pointer to a file in some node's datadir."""
from typing import Any, Optional


class RemoteData:
    """A pointer to data held on the cluster, by its data url."""

    def __init__(self, data_url: Optional[str] = None, obj: Any = None, fmt: str = "msgpack"):
        self.data_url = data_url
        self._obj = obj
        self.fmt = fmt

    def __repr__(self) -> str:
        return f"RemoteData({self.data_url!r})"
