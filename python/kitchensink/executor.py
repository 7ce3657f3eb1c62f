"""The loop inside each warm interpreter.

Frames (4-byte big-endian length + msgpack) arrive on fd 3 and leave on fd 4, so the
user's fds 1 and 2 stay theirs: the node reads them as pipes and attributes whatever
is written there (print, os.write, C extensions, subprocesses) to the running call.

  node -> executor: ["call", seq, fn, data], then the payload (msgpack of [args, kwargs]) as a
                    raw frame of its own, read into one buffer without copies.
                    fn: "mod:func", [source, name], {job, endpoint}, {eval, keep},
                    {exec, returns, keep} or {script, returns, keep};
                    data: {url: [local path, fmt, checksum]} of the call's RemoteData arguments
                    ["exit"]
  executor -> node: ["ready", pid, {job name: description}, {environment, prefix, executable, version}]
                    | ["fatal", message]
                    ["result", seq, packed value, marked]
                    ["error", seq, {kind, pythonType, message, traceback}, marked]

Before a reply, unless the node has already read everything written to fds 1 and 2, a
sentinel goes through both (`marked` says so): the node holds the reply until both pipes
have delivered it, so no output arrives after its call's result. A call that printed
nothing, or whose output the node has already read, costs no sentinel.
"""
import array
import ast
import fcntl
import hashlib
import importlib
import json
import linecache
import os
import signal
import struct
import sys
import termios
import traceback
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import arrays, jobs, remote_data, state, wire

SENTINEL = b"\x00\x1eKS-END\x1e\x00"
IN_FD = 3
OUT_FD = 4

_module_functions: Dict[str, Callable[..., Any]] = {}
_source_cache: Dict[str, Tuple[types.CodeType, str]] = {}


def _die_with_parent() -> None:
    """Ask Linux to kill this interpreter when its node dies, even mid-call."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _read_exact(n: int) -> bytearray:
    """n bytes from the node, read straight into one buffer."""
    buffer = bytearray(n)
    _read_into(memoryview(buffer))
    return buffer


def _read_into(view: memoryview) -> None:
    at = 0
    while at < len(view):
        got = os.readv(IN_FD, [view[at:]])
        if not got:
            raise EOFError
        at += got


# Payloads this big are read into the buffer of the last one when nothing holds on to it any
# more (no array still views it): first-touching fresh memory costs more here than reading into
# it (64 MB: 60-280 ms fresh, 16 ms into a buffer used before). The buffer is kept meanwhile.
REUSE_BYTES = 1 << 20
_last_payload: Optional[bytearray] = None


def _read_payload() -> Any:
    """A call's payload frame: a bytearray, or a view of a reused one."""
    global _last_payload
    (length,) = struct.unpack(">I", _read_exact(4))
    if length < REUSE_BYTES:
        return _read_exact(length)
    buffer, _last_payload = _last_payload, None
    # Two references: `buffer` and getrefcount's own argument. More: some array still views it.
    if buffer is None or not length <= len(buffer) <= 2 * length or sys.getrefcount(buffer) > 2:
        buffer = bytearray(length)
    view = memoryview(buffer)[:length]
    _read_into(view)
    _last_payload = buffer
    return view


def _write_all(pieces: List[Any]) -> None:
    """Writes the buffers in order, however much of them each writev takes."""
    views = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
    while views:
        written = os.writev(OUT_FD, views[:64])
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0


def _read_frame() -> bytearray:
    (length,) = struct.unpack(">I", _read_exact(4))
    return _read_exact(length)


def _send(frame: list) -> None:
    body = wire.msgpack.packb(frame, use_bin_type=True)
    _write_all([struct.pack(">I", len(body)), body])


def _send_result(seq: int, pieces: List[Any], marked: bool) -> None:
    """["result", seq, value, marked], the value's pieces written as they are."""
    size = sum(memoryview(piece).nbytes for piece in pieces)
    head = b"\x94" + wire.msgpack.packb("result") + wire.msgpack.packb(seq) + arrays.bin_header(size)
    tail = wire.msgpack.packb(marked)
    _write_all([struct.pack(">I", len(head) + size + len(tail)), head, *pieces, tail])


def _module_function(spec: str) -> Callable[..., Any]:
    fn = _module_functions.get(spec)
    if fn is None:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"function {spec!r} is not of the form 'package.module:function'")
        fn = importlib.import_module(module_name)
        for part in attr.split("."):
            fn = getattr(fn, part)
        if not callable(fn):
            raise TypeError(f"{spec!r} is not callable")
        _module_functions[spec] = fn
    return fn


def _source_function(source: str, name: str) -> Callable[..., Any]:
    """Compiles source once per hash; runs it in a fresh namespace for every call."""
    if os.environ.get("KS_NO_CODE") == "1":
        raise PermissionError("this node was started with --no-code: call registered module functions only")
    key = hashlib.sha1(source.encode("utf-8")).hexdigest()
    cached = _source_cache.get(key)
    if cached is None:
        filename = f"<ks-source {key[:8]}>"
        tree = ast.parse(source, filename=filename)
        defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        code = compile(tree, filename, "exec")
        # Tracebacks then quote the user's lines, as they would from a file.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        cached = (code, defined[-1] if defined else "")
        _source_cache[key] = cached
    code, last_defined = cached
    target = name or last_defined
    if not target:
        raise ValueError("the source defines no function to call")
    namespace: Dict[str, Any] = {"__name__": "__ks_source__", "__builtins__": __builtins__}
    exec(code, namespace)
    if target not in namespace:
        raise NameError(f"the source defines no function named {target!r}")
    return namespace[target]


def _resolve(fn: Any) -> Callable[..., Any]:
    if isinstance(fn, str):
        return _module_function(fn)
    if isinstance(fn, dict) and "job" not in fn:
        return state.pattern(fn)
    if isinstance(fn, dict):
        func, folder = jobs.endpoint(fn["job"], fn["endpoint"])
        # A job's relative paths resolve against its own folder, as under Racetrack.
        if os.getcwd() != folder:
            os.chdir(folder)
        return func
    source, name = fn
    return _source_function(source, name or "")


def _python_info() -> dict:
    """The environment this interpreter runs in, as StandPy's /info shows it."""
    if os.environ.get("CONDA_DEFAULT_ENV"):
        environment = os.environ["CONDA_DEFAULT_ENV"]
    elif sys.prefix != sys.base_prefix:
        environment = os.path.basename(sys.prefix)
    else:
        environment = "system"
    return {"environment": environment, "prefix": sys.prefix, "executable": sys.executable, "version": sys.version.split()[0]}


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frames(tb: Any) -> Any:
    """The traceback from the user's code on: kitchensink's own frames before it left out."""
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return tb


def _failure(error: BaseException, tb: Any) -> dict:
    return {
        "kind": "exception",
        "pythonType": type(error).__qualname__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, tb)),
    }


def _unread(fd: int) -> int:
    """How much written to `fd` the node has not read yet (0: none); -1 if unknown.

    Node gives the interpreter Unix sockets as fds 1 and 2: a socket's unread output is its
    send queue (TIOCOUTQ; FIONREAD there counts what comes *in*, always 0). A plain pipe
    (the interpreter started by hand) counts it with FIONREAD.
    """
    count = array.array("i", [0])
    for request in (termios.TIOCOUTQ, termios.FIONREAD):
        try:
            fcntl.ioctl(fd, request, count, True)
            return count[0]
        except OSError:  # ENOTTY: not a socket; try it as a pipe
            continue
    return -1


def _flush_output() -> bool:
    """Flushes the call's output and marks its end, unless the node has read all of it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if _unread(1) == 0 and _unread(2) == 0:
        return False
    os.write(1, SENTINEL)
    os.write(2, SENTINEL)
    return True


def _run(seq: int, fn: Any, payload: Any, data: Dict[str, Any]) -> None:
    remote_data.set_call_data(data)
    try:
        args, kwargs = wire.unpack(payload)
        func = _resolve(fn)
        value = func(*(args or []), **(kwargs or {}))
        pieces = wire.pack_pieces(value)
        reply = None
    except wire.UnsendableValue as error:
        reply = ["error", seq, {"kind": "exception", "pythonType": "UnsendableValue", "message": str(error)}]
    except BaseException as error:  # noqa: BLE001 - the user's exception goes to the client, whatever it is
        reply = ["error", seq, _failure(error, _user_frames(error.__traceback__))]
    marked = _flush_output()
    if reply is None:
        _send_result(seq, pieces, marked)
    else:
        _send(reply + [marked])


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    sys.stdin.close()
    for module in filter(None, os.environ.get("KS_MODULES", "").split(",")):
        try:
            importlib.import_module(module)
        except BaseException as error:  # noqa: BLE001
            _send(["fatal", f"cannot import --module {module}: {type(error).__name__}: {error}"])
            sys.exit(3)
    entrypoints = json.loads(os.environ.get("KS_ENTRYPOINTS") or "{}")
    described = {}
    for name, target in entrypoints.items():
        try:
            described[name] = jobs.add(name, target)
        except BaseException as error:  # noqa: BLE001 - the job's own error, whatever it is
            _send(["fatal", f"job {name} ({target}): {type(error).__name__}: {error}"])
            sys.exit(3)
    _send(["ready", os.getpid(), described, _python_info()])
    while True:
        try:
            frame = wire.msgpack.unpackb(_read_frame(), raw=False)
            if frame[0] == "call":
                # Only _run holds the payload: once it returns, the buffer may be reused.
                _run(frame[1], frame[2], _read_payload(), frame[3])
            elif frame[0] == "exit":
                return
        except EOFError:
            return


if __name__ == "__main__":
    main()
