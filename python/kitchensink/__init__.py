"""kitchensink's Python side: the warm executor loop and `RemoteData`."""
from .remote_data import RemoteData

__all__ = ["RemoteData"]
