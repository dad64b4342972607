"""Loading weight files without running code: the one loader for every model AutoVoice reads.

PyTorch checkpoints are pickles, and a pickle can run any code when it is loaded. Every torch
file goes through :func:`safe_torch_load`: its pickle is first scanned for the globals it names
(statically, with ``pickletools``); configuration classes (argparse, omegaconf, fairseq, numpy
scalars, plus names a caller declares) are mapped to inert stand-ins that only hold data;
anything else is refused in one sentence, and the load itself is ``torch.load(weights_only=True)``.
``.safetensors`` files are plain data and are read by :func:`read_safetensors`.
:func:`load_weights` picks between the two by the file's content.

This module depends on nothing in ``engine`` but ``engine.errors``.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from engine.errors import ModelFormatError, VoiceError


def _advice(what: str, choose: str | None) -> str:
    """What the user should pick instead, e.g. "a content encoder" or the caller's own words."""
    return choose or f"a {what}"


def check_weight_file(path: Path, what: str, choose: str | None = None) -> None:
    """Refuse, in one sentence, a path that is missing, empty, a truncated zip, or no torch file at all.

    ``choose`` names what to use instead (default: "a <what>"), e.g. "an RVC .pth model".
    """
    name = path.name
    if not path.is_file():
        raise VoiceError(f"The {what} {str(path)!r} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise ModelFormatError(f"{name} is empty; copy or download the {what} again.")
    with open(path, "rb") as fh:
        head = fh.read(2)
    is_zip = zipfile.is_zipfile(path)
    if not is_zip and head == b"PK":
        raise ModelFormatError(f"{name} is truncated or damaged; copy or download the {what} again.")
    if not is_zip and head[:1] != b"\x80":
        # torch writes a zip archive (or, before 1.6, a pickle stream, which starts with PROTO 0x80)
        raise ModelFormatError(f"{name} is not a PyTorch file (neither a zip archive nor a pickle); choose {_advice(what, choose)}.")


# Globals that may appear in a fairseq checkpoint's configuration or bookkeeping; they become
# inert data holders. Prefixes end with "." (module trees) or are exact names.
_INERT_GLOBAL_PREFIXES = (
    "argparse.Namespace",
    "omegaconf.",
    "fairseq.",
    "typing.Any",
    "enum.Enum",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.dtypes.",
    "copyreg._reconstructor",
    "builtins.type",  # type(None) in metadata; as an inert stand-in it cannot build classes
)


# Harmless data types a configuration may name (omegaconf records e.g. ``object_type=dict``); these
# are given to the unpickler as themselves.
_REAL_SAFE_GLOBALS: dict[str, Any] = {
    f"builtins.{t.__name__}": t for t in (dict, list, tuple, int, float, str, bool, bytes, frozenset, slice, range)
}
_REAL_SAFE_GLOBALS["builtins.NoneType"] = type(None)
_REAL_SAFE_GLOBALS["collections.defaultdict"] = __import__("collections").defaultdict


def _inert_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` as Python 3.12+ pickles enum members (``getattr(EnumClass, "NAME")``), allowed
    only on inert stand-in classes: the result is an inert object holding the member's name."""
    if isinstance(obj, type) and issubclass(obj, InertObject) and isinstance(name, str):
        return obj(name)
    raise ModelFormatError(f"getattr on {type(obj).__name__} is not configuration data")


_REAL_SAFE_GLOBALS["builtins.getattr"] = _inert_getattr


def _is_inert_name(full_name: str, extra: tuple[str, ...] = ()) -> bool:
    return any(full_name == p or (p.endswith(".") and full_name.startswith(p)) for p in _INERT_GLOBAL_PREFIXES + extra)


class InertObject:
    """Stand-in for a configuration object from a checkpoint: it stores what the pickle gave it
    (constructor arguments and state) and does nothing else."""

    source_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        self = object.__new__(cls)
        self.__dict__["_args"] = args
        self.__dict__["_state"] = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<inert {self.source_name}>"


def _make_inert_class(full_name: str) -> type:
    return type("Inert_" + full_name.replace(".", "_"), (InertObject,), {"source_name": full_name})


def plain(obj: Any) -> Any:
    """Turn inert stand-ins (Namespace, omegaconf DictConfig/ListConfig/nodes, enums) into plain
    dicts, lists and values."""
    if isinstance(obj, InertObject):
        state = obj._state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | None):
            state = state[0] or state[1]
        if isinstance(state, dict):
            if "_content" in state:
                return plain(state["_content"])
            if "_val" in state:
                return plain(state["_val"])
            return {k: plain(v) for k, v in state.items() if not str(k).startswith("_")}
        if len(obj._args) == 1:  # Enum members are pickled as EnumClass(value)
            return plain(obj._args[0])
        return None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def _python3_name(module: str, name: str) -> str:
    """Protocol-2 pickles (torch.save's default) name builtins as Python 2 did (``__builtin__``);
    map them as the unpickler will."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _pickle_globals(stream: io.BufferedIOBase) -> set[str]:
    """Names of the globals one pickle in ``stream`` refers to, without executing it."""
    found: set[str] = set()
    strings: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name == "GLOBAL" or name == "INST":
            module, _, attr = str(arg).partition(" ")
            found.add(_python3_name(module, attr))
            strings.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"):
            strings.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name == "STACK_GLOBAL":
            if len(strings) >= 2 and isinstance(strings[-2], str) and isinstance(strings[-1], str):
                found.add(_python3_name(strings[-2], strings[-1]))
            else:
                found.add("<unresolved STACK_GLOBAL>")
            strings.append(None)
        else:
            strings.append(None)
        if len(strings) > 64:
            del strings[:-8]
    return found


def checkpoint_globals(path: str | os.PathLike) -> set[str]:
    """Every global named by a torch checkpoint's pickle (zip or legacy format), found statically."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(b"PK"):
            with zipfile.ZipFile(f) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise ModelFormatError(f"{Path(path).name} is a zip file but not a PyTorch checkpoint.")
                found: set[str] = set()
                for n in names:
                    found |= _pickle_globals(io.BytesIO(zf.read(n)))
                return found
        # Legacy format: magic number, protocol version, sys info, then the object, as 4 pickles.
        found = set()
        for i in range(4):
            try:
                found |= _pickle_globals(f)
            except (ValueError, EOFError):
                if i == 0:
                    raise
                break  # fewer pickles than torch writes: not a torch file, but what it names still counts
        return found


_FALLBACK_SAFE_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.FloatStorage",
        "torch.HalfStorage",
        "torch.DoubleStorage",
        "torch.LongStorage",
        "torch.IntStorage",
        "torch.BFloat16Storage",
        "torch.BoolStorage",
        "torch.ByteStorage",
        "torch.storage.UntypedStorage",
    }
)


def _torch_default_safe_globals() -> set[str]:
    """What torch's weights_only unpickler allows by itself (private API; a fixed list if it moves)."""
    try:
        from torch import _weights_only_unpickler as wou

        return set(wou._get_allowed_globals().keys())
    except (ImportError, AttributeError):
        return set(_FALLBACK_SAFE_GLOBALS)


_SAFE_LOAD_LOCK = threading.Lock()


def safe_torch_load(
    path: str | os.PathLike, what: str = "model file", inert_prefixes: Iterable[str] = (), choose: str | None = None
) -> Any:
    """Load a torch checkpoint without running pickled code.

    Configuration classes become :class:`InertObject` stand-ins; any other global (a function that
    could run code, a class we do not know) makes this raise ModelFormatError naming it.
    ``inert_prefixes`` adds names a particular format legitimately records (e.g. the model class a
    checkpoint names for bookkeeping): they become inert stand-ins too, never the real class.
    ``what`` names the kind of file in messages ("content encoder"); ``choose`` says what to use
    instead (default "a <what>"), so every refusal is one sentence naming the file and what to do.
    """
    path = Path(path)
    name = path.name
    check_weight_file(path, what, choose)
    advice = _advice(what, choose)
    extra = tuple(inert_prefixes)
    try:
        names = checkpoint_globals(path)
    except ModelFormatError:
        raise
    except Exception as exc:
        raise ModelFormatError(f"{name} is not a readable PyTorch checkpoint ({type(exc).__name__}); check that it is the right file and fully downloaded.") from None
    unknown = sorted(n for n in names if n not in _torch_default_safe_globals())
    refused = [n for n in unknown if n not in _REAL_SAFE_GLOBALS and not _is_inert_name(n, extra)]
    if refused:
        raise ModelFormatError(
            f"{name} refers to {', '.join(refused[:3])}{' and more' if len(refused) > 3 else ''}, which could run code when loaded, so AutoVoice refuses to open it; use {advice} from a source you trust."
        )
    stand_ins = [(_REAL_SAFE_GLOBALS[n], n) if n in _REAL_SAFE_GLOBALS else (_make_inert_class(n), n) for n in unknown]
    try:
        # NB: safe_globals changes torch's process-wide allow-list and restores it on exit; the lock
        # keeps two of our loads from restoring each other's lists mid-load. A concurrent torch.load
        # elsewhere could see the stand-ins, which are harmless data holders.
        with _SAFE_LOAD_LOCK, torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).split("\n")[0][:200]
        raise ModelFormatError(f"{name} could not be loaded safely ({msg}); use {advice} from a source you trust.") from None


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors (float types only); plain data, no code, no extra package."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            start, end = info["data_offsets"]
            t = torch.frombuffer(bytearray(raw[base + start : base + end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
            out[name] = t.reshape(info["shape"]).float()
        return out
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelFormatError(f"{path.name} is not a readable .safetensors file ({type(exc).__name__}); check that it is complete.") from None


def load_weights(
    path: str | os.PathLike, what: str = "model file", inert_prefixes: Iterable[str] = (), choose: str | None = None
) -> Any:
    """Whatever a weight file holds: a ``.safetensors`` file's tensors, or a torch checkpoint loaded
    by :func:`safe_torch_load`. Every failure is a ModelFormatError/VoiceError in one sentence."""
    path = Path(path)
    if not path.is_file():
        raise VoiceError(f"The {what} {str(path)!r} does not exist; check the path.")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header, which opens with "{"
    if path.suffix.lower() == ".safetensors" or head[8:9] == b"{":
        return read_safetensors(path)
    return safe_torch_load(path, what=what, inert_prefixes=inert_prefixes, choose=choose)
