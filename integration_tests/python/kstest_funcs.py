"""Functions the integration tests call by module name."""
import os
import time

LOADED_AT = time.time()


def add(x, y=0):
    return x + y


def where():
    return os.environ["KS_NODE_NAME"]


def slow(seconds):
    start = time.time()
    time.sleep(seconds)
    return {"host": os.environ["KS_NODE_NAME"], "start": start, "end": time.time()}


def append_line(path, line):
    """A side effect the tests can count."""
    with open(path, "a") as f:
        f.write(line + "\n")
    return os.environ["KS_NODE_NAME"]


def loaded_at():
    return LOADED_AT


def data_size(d):
    """Length of a RemoteData argument's bytes, read on the host that runs the call."""
    return [os.environ["KS_NODE_NAME"], len(d.raw())]
