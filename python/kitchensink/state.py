"""The interpreter's persistent namespace, and the calls that run in it (Apex's JEP patterns).

`eval` answers an expression's value, `exec` runs statements and answers the variables named
in `returns`, a script runs a file under the node's `--script-dir` (or source text). Each
binds the call's `vars` in the namespace for the call and takes them away after it (the
values they replaced come back), unless `keep`. What the code itself defines stays: that is
the state the next call on this interpreter sees.
"""
import hashlib
import linecache
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

_namespace: Dict[str, Any] = {"__name__": "__ks_state__", "__builtins__": __builtins__}
_compiled: Dict[Tuple[str, Optional[str], str], Any] = {}
_MISSING = object()
# Compiled code kept per interpreter: an application that evals ever new text must not grow it forever.
_MAX_COMPILED = 1000


def _compile(source: str, mode: str, filename: Optional[str] = None) -> Any:
    """Compiles once per source; tracebacks quote the user's lines, as from a file."""
    key = (mode, filename, source)
    code = _compiled.get(key)
    if code is None:
        name = filename or f"<ks-{mode} {hashlib.sha1(source.encode('utf-8')).hexdigest()[:8]}>"
        code = compile(source, name, mode)
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        if len(_compiled) >= _MAX_COMPILED:
            oldest = next(iter(_compiled))
            linecache.cache.pop(_compiled.pop(oldest).co_filename, None)
        _compiled[key] = code
    return code


def _refuse_source() -> None:
    if os.environ.get("KS_NO_CODE") == "1":
        raise PermissionError("this node was started with --no-code: it runs no source text (eval, exec, script source)")


def _script_path(path: str) -> str:
    """`path` under the node's `--script-dir`; never a file outside it."""
    root = os.environ.get("KS_SCRIPT_DIR")
    if not root:
        raise PermissionError("this node was started without --script-dir: it runs no script files")
    root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([full, root]) != root:
        raise PermissionError(f"script {path!r} is outside --script-dir")
    if not os.path.isfile(full):
        raise FileNotFoundError(f"no script {path!r} in --script-dir")
    return full


def _with_vars(run: Callable[[], Any], variables: Dict[str, Any], keep: bool) -> Any:
    replaced = {name: _namespace.get(name, _MISSING) for name in variables}
    _namespace.update(variables)
    try:
        return run()
    finally:
        if not keep:
            for name, value in replaced.items():
                if value is _MISSING:
                    _namespace.pop(name, None)
                else:
                    _namespace[name] = value


def _returned(names: Optional[List[str]]) -> Any:
    if not names:
        return None
    unset = [name for name in names if name not in _namespace]
    if unset:
        raise NameError(f"returns names {', '.join(unset)}, which the code did not set")
    return {name: _namespace[name] for name in names}


def pattern(fn: Dict[str, Any]) -> Callable[..., Any]:
    """The callable for an `eval`, `exec` or `script` call; its keyword arguments are its vars."""
    keep = bool(fn.get("keep"))
    returns = fn.get("returns")
    if "eval" in fn:
        _refuse_source()
        expression = _compile(fn["eval"], "eval")
        return lambda **variables: _with_vars(lambda: eval(expression, _namespace), variables, keep)
    if "exec" in fn:
        _refuse_source()
        code = _compile(fn["exec"], "exec")
    elif "src" in fn["script"]:
        _refuse_source()
        code = _compile(fn["script"]["src"], "exec")
    else:
        full = _script_path(fn["script"]["path"])
        with open(full, encoding="utf-8") as f:
            code = _compile(f.read(), "exec", full)

    def run() -> Any:
        exec(code, _namespace)
        return _returned(returns)

    return lambda **variables: _with_vars(run, variables, keep)
