"""Jobs: named entrypoints loaded once per interpreter, Racetrack's job convention.

A job is a class with `perform` (instantiated once, so its `__init__` loads a model once) or a
plain function (its `perform`). The class may add `auxiliary_endpoints()`,
`static_endpoints()`, `docs_input_example()`, `docs_input_examples()` and `metrics()`.
The job's folder is importable, and its code runs with that folder as working directory.
"""
import collections.abc
import importlib
import importlib.util
import inspect
import json
import mimetypes
import os
import re
import sys
import typing
from typing import Any, Callable, Dict, List, Tuple

PERFORM = "/perform"
# The node asks for a job's metrics() through this endpoint; no HTTP path can name it.
METRICS = "#metrics"
_PATH = re.compile(r"^/[A-Za-z0-9_.\-/]{1,200}$")


class JobLoadError(Exception):
    """An entrypoint that cannot serve: the message names the job and what is wrong."""


class Job:
    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target
        self.folder = os.getcwd()
        self.instance: Any = None
        self.endpoints: Dict[str, Callable[..., Any]] = {}
        self.statics: Dict[str, Tuple[str, str]] = {}
        self.examples: Dict[str, Any] = {}


_jobs: Dict[str, Job] = {}


def _load_target(job: Job) -> Any:
    """The class or function TARGET names: `file.py`, `file.py:Attr`, `pkg.module:Attr`."""
    where, _, attr = job.target.rpartition(":") if ":" in job.target else (job.target, "", "")
    if where.endswith(".py"):
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise JobLoadError(f"no file {path}")
        job.folder = os.path.dirname(path)
        if job.folder not in sys.path:
            sys.path.insert(0, job.folder)
        os.chdir(job.folder)
        spec = importlib.util.spec_from_file_location(f"ks_job_{job.name.replace('-', '_').replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        if not attr:
            raise JobLoadError("give a .py file, file.py:Class, or pkg.module:Class / pkg.module:function")
        module = importlib.import_module(where)
        job.folder = os.path.dirname(os.path.abspath(getattr(module, "__file__", None) or "."))
        os.chdir(job.folder)
    if attr:
        found: Any = module
        for part in attr.split("."):
            if not hasattr(found, part):
                raise JobLoadError(f"{where} has no {attr!r}")
            found = getattr(found, part)
        return found
    classes = [v for v in vars(module).values() if inspect.isclass(v) and v.__module__ == module.__name__ and callable(getattr(v, "perform", None))]
    if len(classes) != 1:
        names = ", ".join(c.__name__ for c in classes) or "none"
        raise JobLoadError(f"{where} must hold exactly one class with perform() (found {names}): name it as {where}:Class")
    return classes[0]


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """The signature, with annotations that `from __future__ import annotations` left as text evaluated."""
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate is described as text
        return inspect.signature(fn)


def _check_signature(path: str, fn: Callable[..., Any]) -> None:
    for parameter in _signature(fn).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise JobLoadError(f"endpoint {path} takes *{parameter.name}, which a JSON object of keyword arguments cannot fill")
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise JobLoadError(f"endpoint {path} takes {parameter.name} as positional-only, which a JSON object cannot fill")


def _optional(job: Job, method: str) -> Any:
    """One of Racetrack's optional methods of a class job, bound; None when it has none."""
    found = getattr(job.instance, method, None) if job.instance is not None else None
    return found if callable(found) else None


def load(name: str, target: str) -> Job:
    """Imports and instantiates one entrypoint; raises JobLoadError (or the job's own error)."""
    job = Job(name, target)
    found = _load_target(job)
    if inspect.isclass(found):
        job.instance = found()
        perform = getattr(job.instance, "perform", None)
        if not callable(perform):
            raise JobLoadError(f"class {found.__name__} has no perform()")
    elif callable(found):
        perform = found
    else:
        raise JobLoadError(f"{target} is neither a class nor a function")
    job.endpoints[PERFORM] = perform
    auxiliary = _optional(job, "auxiliary_endpoints")
    if auxiliary:
        for path, fn in dict(auxiliary()).items():
            if not isinstance(path, str) or not _PATH.match(path) or path in (PERFORM, "/parameters") or ".." in path:
                raise JobLoadError(f"auxiliary endpoint {path!r} must be a path like /explain, not /perform or /parameters")
            if not callable(fn):
                raise JobLoadError(f"auxiliary endpoint {path} is not callable")
            job.endpoints[path] = fn
    for path, fn in job.endpoints.items():
        _check_signature(path, fn)
    statics = _optional(job, "static_endpoints")
    if statics:
        for path, entry in dict(statics()).items():
            filename, mimetype = (entry, None) if isinstance(entry, str) else tuple(entry)
            full = os.path.realpath(os.path.join(job.folder, filename))
            if not isinstance(path, str) or not _PATH.match(path) or ".." in path or path in job.endpoints:
                raise JobLoadError(f"static endpoint {path!r} must be a path like /manifest, apart from the other endpoints")
            if os.path.commonpath([full, os.path.realpath(job.folder)]) != os.path.realpath(job.folder) or not os.path.exists(full):
                raise JobLoadError(f"static endpoint {path}: {filename!r} is not a file or folder inside {job.folder}")
            job.statics[path] = (full, mimetype or mimetypes.guess_type(full)[0] or "application/octet-stream")
    examples = _optional(job, "docs_input_examples")
    if examples:
        job.examples.update(dict(examples()))
    example = _optional(job, "docs_input_example")
    if example:
        job.examples[PERFORM] = example()
    return job


def add(name: str, target: str) -> dict:
    """Loads an entrypoint for the calls to come and returns its description."""
    start = os.getcwd()
    try:
        _jobs[name] = load(name, target)
    finally:
        os.chdir(start)
    return describe(_jobs[name])


def endpoint(name: str, path: str) -> Tuple[Callable[..., Any], str]:
    """The callable behind a job's endpoint, and the folder it runs in."""
    job = _jobs.get(name)
    if job is None:
        raise LookupError(f"this interpreter has no job {name!r}")
    metrics = _optional(job, "metrics") if path == METRICS else None
    if metrics:
        return metrics, job.folder
    fn = job.endpoints.get(path or PERFORM)
    if fn is None:
        raise LookupError(f"job {name!r} has no endpoint {path!r}")
    return fn, job.folder


# --- descriptions -------------------------------------------------------------------------

_SIMPLE_SCHEMAS = {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"}, bytes: {"type": "string"}, type(None): {"type": "null"}, list: {"type": "array"}, tuple: {"type": "array"}, set: {"type": "array"}, dict: {"type": "object"}}


def schema_of(annotation: Any) -> dict:
    """A JSON Schema for a Python annotation; {} (anything) when it has no JSON meaning."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if isinstance(annotation, str):  # `from __future__ import annotations` leaves names as text
        named = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}.get(annotation)
        return schema_of(named) if named else {}
    if annotation in _SIMPLE_SCHEMAS:
        return dict(_SIMPLE_SCHEMAS[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        options = [schema_of(a) for a in args]
        if any(not o for o in options):
            return {}
        return {"anyOf": options}
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        schema: dict = {"type": "array"}
        if origin is not tuple and args:
            item = schema_of(args[0])
            if item:
                schema["items"] = item
        return schema
    if origin is dict:
        schema = {"type": "object"}
        if len(args) == 2 and schema_of(args[1]):
            schema["additionalProperties"] = schema_of(args[1])
        return schema
    if origin is typing.Literal:
        return {"enum": list(args)}
    return {}


def _annotation_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _doc(fn: Callable[..., Any]) -> Tuple[str, str, Dict[str, str], str]:
    """Summary, description, `:param x:` texts and `:return:` text of a docstring."""
    text = inspect.getdoc(fn) or ""
    params: Dict[str, str] = {}
    returns = ""
    prose: List[str] = []
    for line in text.splitlines():
        m = re.match(r"\s*:param\s+(?:[^:]*\s)?(\w+):\s*(.*)", line)
        r = re.match(r"\s*:returns?:\s*(.*)", line)
        if m:
            params[m.group(1)] = m.group(2).strip()
        elif r:
            returns = r.group(1).strip()
        elif not re.match(r"\s*:\w", line):
            prose.append(line)
    paragraphs = "\n".join(prose).strip().split("\n\n")
    return paragraphs[0].replace("\n", " ").strip(), "\n\n".join(paragraphs[1:]).strip(), params, returns


def _json_default(value: Any) -> Tuple[bool, Any]:
    try:
        json.dumps(value, allow_nan=False)
        return True, value
    except (TypeError, ValueError):
        return False, repr(value)


def _describe_endpoint(job: Job, path: str, fn: Callable[..., Any]) -> dict:
    signature = _signature(fn)
    summary, description, param_docs, returns_doc = _doc(fn)
    parameters = []
    extra = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        entry: Dict[str, Any] = {
            "name": parameter.name,
            "type": _annotation_text(parameter.annotation),
            "schema": schema_of(parameter.annotation),
            "required": parameter.default is inspect.Parameter.empty,
        }
        if parameter.default is not inspect.Parameter.empty:
            ok, default = _json_default(parameter.default)
            entry["default" if ok else "defaultRepr"] = default
        if parameter.name in param_docs:
            entry["doc"] = param_docs[parameter.name]
        parameters.append(entry)
    described: Dict[str, Any] = {
        "path": path,
        "summary": summary,
        "description": description,
        "parameters": parameters,
        "extraParameters": extra,
        "returns": {"type": _annotation_text(signature.return_annotation), "schema": schema_of(signature.return_annotation), "doc": returns_doc},
    }
    if path in job.examples:
        ok, example = _json_default(job.examples[path])
        if ok:
            described["example"] = example
    return described


def describe(job: Job) -> dict:
    """What the catalogue shows of a job: endpoints, parameters, docs, examples, statics."""
    owner = job.instance if job.instance is not None else job.endpoints[PERFORM]
    summary, description, _, _ = _doc(owner if job.instance is None else type(owner))
    return {
        "name": job.name,
        "target": job.target,
        "folder": job.folder,
        "summary": summary,
        "description": description,
        "endpoints": [_describe_endpoint(job, path, fn) for path, fn in job.endpoints.items()],
        "statics": [{"path": path, "file": full, "mimetype": mimetype} for path, (full, mimetype) in job.statics.items()],
        "metrics": _optional(job, "metrics") is not None,
    }

