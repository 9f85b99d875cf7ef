"""Reading published checkpoints safely and fitting them to our modules.

Pickled checkpoints are opened with ``torch.load(weights_only=True)``: a model zoo that downloads
files from the Internet must not execute code hidden in them. The one exception is a local file the
user vouches for (``ssmzoo convert --trust-checkpoint``), never one fetched from the network. Every
failure becomes one :class:`~ssmzoo.errors.WeightsError` line that names the file and says what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from .checkpoint_files import (REDO, PathLike, check_checkpoint_file, checkpoint_problem, sha256_file,  # noqa: F401
                               sniff_format)  # (re-exported: the module's API since before the split)
from .errors import WeightsError
from .text import in_brief

__all__ = [
    "LoadedCheckpoint",
    "Conversion",
    "state_dict_key_text",
    "WRAPPER_KEYS",
    "read_checkpoint",
    "load_state_dict",
    "load_into_model",
    "convert_to_safetensors",
    "sha256_file",
    "sniff_format",
    "checkpoint_problem",
    "check_checkpoint_file",
]

logger = logging.getLogger(__name__)

# Keys under which training scripts nest the weights, in the order we try them: EMA weights first,
# because zoos that ship both (DeiT/timm-style trainers) report the EMA accuracy.
WRAPPER_KEYS = ("model_ema", "state_dict_ema", "model", "state_dict", "module")

@dataclass(frozen=True)
class LoadedCheckpoint:
    """A flat state dict plus how it was found inside the file (for messages and `--verbose`)."""

    state_dict: dict[str, Tensor]
    format: str  # "safetensors" | "pth"
    key_path: tuple[str, ...]  # wrapper keys walked through, e.g. ("model_ema",); () when flat
    stripped_prefix: Optional[str]  # "module." if DDP prefixes were removed


def state_dict_key_text(key_path: Sequence[str]) -> str:
    """A key path as ``state_dict_key`` (manifest) and ``--state-dict-key`` (convert) take it, e.g.
    ``model_ema``, so that messages name what a user would type to pick another entry of the file."""
    return ".".join(key_path)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _unwrap(obj: Any, path: Path, state_dict_key: Optional[str]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save `model.state_dict()` instead of the module"
        )
    key_path: list[str] = []
    if state_dict_key:
        node: Any = obj
        for part in state_dict_key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                have = ", ".join(map(repr, list(node)[:8])) if isinstance(node, Mapping) else type(node).__name__
                raise WeightsError(
                    f"{path} has no state-dict key {state_dict_key!r} (keys there: {have}); "
                    "fix the key (convert: --state-dict-key; a model: state_dict_key in its manifest entry), or "
                    "leave it out to detect it"
                )
            node = node[part]
            key_path.append(part)
        obj = node
    # Walk the usual wrappers until we reach a mapping of tensors (a few levels at most).
    for _ in range(4):
        if _is_tensor_dict(obj):
            break
        if not isinstance(obj, Mapping):
            break
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping) and obj.get(key):
                obj = obj[key]
                key_path.append(key)
                break
        else:
            break
    if not isinstance(obj, Mapping):
        where = "/".join(key_path) or "top level"
        raise WeightsError(f"{path}: the entry at {where} is a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not obj:  # e.g. torch.save({}, path), or a state dict saved before the model had any weights
        where = f"its entry at {'/'.join(key_path)}" if key_path else "the checkpoint"
        raise WeightsError(f"{path}: {where} is an empty dict, with no weights in it; save `model.state_dict()` of "
                           "the trained model")
    if not tensors:
        keys = ", ".join(map(repr, list(obj)[:8]))
        raise WeightsError(
            f"{path} contains no tensors at {'/'.join(key_path) or 'the top level'} (keys: {keys}); "
            "name the entry that holds the weights (convert: --state-dict-key; a model: state_dict_key in its "
            "manifest entry)"
        )
    dropped = [k for k in obj if k not in tensors]
    if dropped:
        logger.info("%s: ignoring %d non-tensor entries (%s)", path, len(dropped), ", ".join(map(str, dropped[:5])))
    return {str(k): v for k, v in tensors.items()}, tuple(key_path)


@functools.lru_cache(maxsize=None)
def _numpy_scalar_globals() -> tuple:
    """What torch's weights-only unpickler needs to rebuild pickled numpy scalars (``np.int64(3)``,
    ``np.float64(83.1)``: the epoch and best accuracy many training scripts save beside the weights), as
    torch's docs recommend allowlisting them: numpy's ``scalar`` function, under its numpy 1 name
    (``numpy.core.multiarray.scalar``) and its numpy 2 one (``numpy._core.multiarray.scalar``), so files
    saved under either load; ``numpy.dtype``; and the dtype classes, whose instances' state is set by a
    BUILD the unpickler allows for allowlisted types only. These build values from bytes and call nothing
    else. Object and void dtypes (which hold arbitrary objects) and arrays stay refused."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"] if code not in "OV"}
    return ((scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *sorted(dtype_classes, key=str))


def _blocking_global(message: str) -> Optional[str]:
    """The class or function torch's weights-only unpickler refused, from its message; None where it
    refused something else. Random bytes also fail it ("Unsupported operand N"): only a GLOBAL naming a
    class means the file really holds pickled Python objects."""
    if not re.search(r"Unsupported global|GLOBAL [\w.]+", message):
        return None
    found = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"(?:global|class) [`']?([\w.]+)", message)
    return found.group(1) if found else "a class it names"


def _torch_load(path: Path, trust: bool = False, tensor_data: bool = True) -> Any:
    """``torch.load(weights_only=True)``: tensors, containers, numbers and a few allowlisted classes only.
    ``trust`` (``convert --trust-checkpoint``, a local file the user vouches for) unpickles everything,
    running whatever code the file names. ``tensor_data=False``: the same unpickling (and refusals), but
    the tensors come on the meta device (shape and dtype only), their bytes never read."""
    try:
        # A file object, not the path: recent torch guesses the format from the file's extension.
        # Training scripts in the DeiT lineage (VideoMamba's among them) save their argparse.Namespace
        # beside the weights; that class only holds attributes, so it is allowed, as are numpy scalars.
        with open(path, "rb") as f, \
                torch.serialization.safe_globals([argparse.Namespace, *_numpy_scalar_globals()]), \
                (contextlib.nullcontext() if tensor_data else torch.serialization.skip_data()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "unusual pickle protocol" chatter on garbage files
            # meta: the zip format reads no storage record; skip_data: the legacy format reads none either
            return torch.load(f, map_location="cpu" if tensor_data else "meta", weights_only=not trust)
    except pickle.UnpicklingError as e:
        msg = str(e)
        blocked = _blocking_global(msg)
        if blocked is not None:
            raise WeightsError(
                f"{path} holds pickled Python objects besides tensors ({blocked}), which ssmzoo refuses to "
                f"unpickle (torch.load weights_only=True: they could run code); {_untrusted_hint(path)}"
            ) from None
        raise WeightsError(
            f"{path} is truncated or not a PyTorch checkpoint ({in_brief(msg)}); {REDO}"
        ) from None
    except (EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(
            f"{path} is truncated (unexpected end of file: {in_brief(str(e)) or type(e).__name__}); "
            f"{REDO}"
        ) from None
    except RuntimeError as e:
        raise WeightsError(
            f"{path} is truncated or corrupt ({in_brief(str(e))}); {REDO}"
        ) from None
    except (ImportError, AttributeError) as e:
        if not trust:  # (the weights-only unpickler imports nothing: a damaged file, below)
            raise _damaged(path, e) from None
        raise WeightsError(
            f"{path} names Python code that cannot be imported here ({type(e).__name__}: {in_brief(str(e))}); "
            "convert it where the code that saved it is importable (e.g. in the training repository's folder)"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises a zoo of types for damaged files
        raise _damaged(path, e) from None


def _damaged(path: Path, e: Exception) -> WeightsError:
    return WeightsError(
        f"{path} is truncated, corrupt or not a PyTorch checkpoint ({type(e).__name__}: {in_brief(str(e))}); "
        f"{REDO}"
    )


def _untrusted_hint(path: Path) -> str:
    """What to do about a pickle that holds more than tensors: a file the user trusts can be unpickled
    once, by ``convert --trust-checkpoint``, into safetensors; one fetched from the Hub never is."""
    from .hub import in_hub_cache

    if in_hub_cache(path):
        return ("it was fetched from the Hub, so ssmzoo never unpickles it otherwise: ask the repo's owners for a "
                "safetensors copy, or pass --weights with another file")
    return (f"if you trust this file, rewrite it once as safetensors with `ssmzoo convert {path} OUT.safetensors "
            "--trust-checkpoint` (which runs the code it names) and use that file")




# safetensors' dtype names (its header's "dtype"), as torch names them; a name this torch lacks is skipped
_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64",
}


def _safetensors_meta(path: Path) -> dict[str, Tensor]:
    """A safetensors file's tensors as meta tensors (shape and dtype), from its header alone: ``safe_open``
    parses and validates the header as ``load_file`` does, and no tensor's bytes are read."""
    from safetensors import safe_open

    out: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for name in getattr(f, "offset_keys", f.keys)():  # load_file's order (by offset), where there is one
            part = f.get_slice(name)
            dtype = getattr(torch, _SAFETENSORS_DTYPES.get(part.get_dtype(), ""), None)
            out[name] = torch.empty(part.get_shape(), dtype=dtype if isinstance(dtype, torch.dtype) else torch.uint8,
                                    device="meta")
    return out


def read_checkpoint(
    path: PathLike,
    *,
    state_dict_key: Optional[str] = None,
    sha256: Optional[str] = None,
    format: str = "auto",
    trust: bool = False,
    tensor_data: bool = True,
) -> LoadedCheckpoint:
    """Read, verify and flatten a checkpoint; see :func:`load_state_dict`. ``trust``: unpickle a local
    file whatever it holds (running the code it names); refused for a file fetched from the network.
    ``tensor_data=False``: where the weights are (``key_path``, the names) without reading them: the
    same checks and answer, but the state dict's tensors are on the meta device (shape and dtype only),
    from a safetensors header or a pickle whose storages are not read."""
    if trust:
        from .hub import check_trustable

        check_trustable(str(path))
    p = Path(path)
    kind = check_checkpoint_file(p, sha256=sha256)
    if format not in ("auto", kind):
        logger.warning("%s: manifest says format %r but the file is %s; reading it as %s", p, format, kind, kind)

    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p), device="cpu") if tensor_data else _safetensors_meta(p)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise WeightsError(
                f"{p} is truncated or corrupt (safetensors: {in_brief(str(e))}); {REDO}"
            ) from None
    else:
        obj = _torch_load(p, trust=trust, tensor_data=tensor_data)

    sd, key_path = _unwrap(obj, p, state_dict_key)
    stripped = None
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
        stripped = "module."
    if key_path or stripped:
        where = "/".join(key_path) or "top level"
        logger.info("%s: weights found under %s%s", p, where, ", 'module.' stripped" if stripped else "")
    return LoadedCheckpoint(state_dict=sd, format=kind, key_path=key_path, stripped_prefix=stripped)


def load_state_dict(
    path: PathLike,
    *,
    state_dict_key: Optional[str] = None,
    sha256: Optional[str] = None,
    format: str = "auto",
) -> dict[str, Tensor]:
    """Flat ``{name: tensor}`` from a safetensors file or a tensors-only pickle.

    ``state_dict_key`` (dotted for nesting, e.g. ``"model"``) selects the entry holding the weights;
    when None, the usual training-script wrappers (:data:`WRAPPER_KEYS`) are unwrapped. DDP's
    ``module.`` prefix is removed. ``sha256``, when given, is checked before anything is parsed. The
    file's kind is read from its first bytes; ``format`` is only advisory.
    """
    return read_checkpoint(path, state_dict_key=state_dict_key, sha256=sha256, format=format).state_dict


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (", …" if len(items) > n else "")


def load_into_model(model: nn.Module, state_dict: Mapping[str, Tensor], *, model_name: str) -> nn.Module:
    """Strictly load ``state_dict`` into ``model``; any mismatch is one line with counts and examples."""
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key{'s' * (len(missing) != 1)} ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key{'s' * (len(unexpected) != 1)} ({_few(unexpected)})")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatch{'es' * (len(mismatched) != 1)} "
            f"(checkpoint vs model: {_few(mismatched, 3)})"
        )
    if problems:
        raise WeightsError(
            f"weights do not fit model {model_name!r}: " + "; ".join(problems)
            + "; the checkpoint is for another model or variant (check the manifest entry or --weights)"
        )
    try:
        model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights do not fit model {model_name!r}: {in_brief(str(e))}") from None
    return model


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_to_safetensors` wrote, and where in the source it found the weights."""

    source: Path
    output: Path
    tensors: int
    tensor_bytes: int  # the tensors' data, summed
    file_bytes: int  # the written file (data plus the safetensors header)
    source_format: str  # "pth" | "safetensors", from the file's content
    key_path: tuple[str, ...]  # wrapper keys walked through, e.g. ("model",); () when flat
    stripped_prefix: Optional[str]  # "module." if DDP prefixes were removed

    def to_dict(self) -> dict:
        return {"source": str(self.source), "output": str(self.output), "tensors": self.tensors,
                "tensor_bytes": self.tensor_bytes, "file_bytes": self.file_bytes,
                "source_format": self.source_format, "key_path": list(self.key_path),
                "stripped_prefix": self.stripped_prefix}


def convert_to_safetensors(src: PathLike, dst: PathLike, *, state_dict_key: Optional[str] = None,
                           check: Optional[Callable[[dict[str, Tensor]], None]] = None,
                           trust: bool = False) -> Conversion:
    """Write the checkpoint at ``src`` as a flat safetensors file at ``dst``; returns what was written.

    Tensors that share storage (tied weights) or are views are copied so safetensors accepts them,
    and every key stays present, so a strict load of the result works like a load of ``src``.
    ``check`` (e.g. a strict load into a model) sees the state dict first: if it raises, nothing is
    written. The file gets the usual permissions (safetensors itself creates it readable by its owner
    only). ``trust``: see :func:`read_checkpoint`; what is written is tensors only, safe to load anywhere.
    """
    from safetensors.torch import save_file

    loaded = read_checkpoint(src, state_dict_key=state_dict_key, trust=trust)
    sd = loaded.state_dict
    if check is not None:
        check(sd)
    out: dict[str, Tensor] = {}
    seen_storages: set[int] = set()
    for name, t in sd.items():
        t = t.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        whole = t.is_contiguous() and t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
        if ptr in seen_storages or not whole:
            t = t.contiguous().clone()
        else:
            seen_storages.add(ptr)
        out[name] = t
    dst = Path(dst)
    # a link is written through, as `cp` does: its target gets the file (replaced whole, never half written)
    # and the link stays; replacing the link itself would leave the file it points at as it was
    target = Path(os.path.realpath(dst)) if dst.is_symlink() else dst
    tmp = target.with_name(target.name + ".tmp")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_file(out, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
        file_bytes = target.stat().st_size
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write {dst}: {e.strerror or e}") from None
    return Conversion(source=Path(src), output=dst, tensors=len(out),
                      tensor_bytes=sum(t.numel() * t.element_size() for t in out.values()), file_bytes=file_bytes,
                      source_format=loaded.format, key_path=loaded.key_path, stripped_prefix=loaded.stripped_prefix)
