"""Checkpoint files judged from their bytes, without torch: which format a file is, whether its headers
are whole, its sha256. ``ssmzoo models`` and ``ssmzoo download`` check cached and fetched files with
these, and need no torch for it (seconds to import); ``ssmzoo.checkpoint`` reads the weights and
re-exports these names."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

from .errors import WeightsError, WeightsOptionError
from .paths import missing_file
from .text import count, in_brief

PathLike = Union[str, "os.PathLike[str]"]

# torch.save's magic number (torch.serialization.MAGIC_NUMBER; tests/test_checkpoint.py checks they agree)
TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

_CHUNK = 4 << 20
_sha_memo: dict[tuple, str] = {}


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in chunks; remembered per (file, size, mtime) so verifying twice is free."""
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if key in _sha_memo:
            return _sha_memo[key]
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise WeightsError(f"cannot read weights file {p}: {e.strerror or e}") from e
    _sha_memo[key] = digest.hexdigest()
    return _sha_memo[key]


def _readable_size(p: Path) -> int:
    """The size of a weights file that can be opened; otherwise one line naming it and the cause."""
    try:
        if not p.exists():
            raise WeightsOptionError(f"{p}: {missing_file(p)}")
        if not p.is_file():
            raise WeightsOptionError(f"weights path is not a file: {p}")
        with open(p, "rb"):
            return p.stat().st_size
    except OSError as e:
        raise WeightsError(f"cannot read weights file {p}: {e.strerror or e}") from None


def sniff_format(path: PathLike) -> Optional[str]:
    """'safetensors', 'pth' (zip or legacy pickle) or None, from the file's first bytes, not its name."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        # A truncated file keeps its header: let the safetensors reader report the truncation.
        if head[8:9] == b"{" and header_len < (100 << 20):
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "pth"
    return None


def checkpoint_problem(path: PathLike) -> Optional[str]:
    """Why the file cannot be a checkpoint, judged from its headers alone; None when it looks like one.

    Cheap enough to run on every download (a few KiB read, or a zip's central directory, whatever the
    file's size), so that an error page, an empty or cut-off file is caught when it is fetched rather
    than when a model first loads it. Not a load: a file that passes may still fail to load (a legacy
    pickle's tensor bytes are only measured; a zip's records are only listed) or hold other weights.
    """
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        return "it is empty"
    kind = sniff_format(p)
    if kind is None:
        return _describe_garbage(p, lfs_hint=False)
    if kind == "safetensors":
        return _safetensors_problem(p, size)
    with open(p, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK"):
        return _torch_zip_problem(p)
    return _legacy_pickle_problem(p, size)


def _safetensors_problem(path: Path, size: int) -> Optional[str]:
    """The header must parse, and the last tensor's data must end exactly where the file does."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if 8 + header_len > size:
            return (f"it is a truncated safetensors file (its header alone should take {8 + header_len} bytes, "
                    f"the file has {size})")
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        return f"its safetensors header is not valid JSON ({in_brief(str(e), 80)})"
    if not isinstance(header, dict):
        return f"its safetensors header is a JSON {type(header).__name__}, not an object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"its safetensors header gives tensor {name!r} no valid data_offsets"
        end = max(end, offsets[1])
    expected = 8 + header_len + end
    if size < expected:
        return f"it is a truncated safetensors file (its tensors end at byte {expected}, the file has {size})"
    if size > expected:
        return f"it is a damaged safetensors file ({size - expected} bytes after the last tensor's data)"
    return None


def _torch_zip_problem(path: Path) -> Optional[str]:
    """torch.save's zip format: a readable central directory (at the file's end, so a cut-off file
    has none) that lists the pickled object, ``<archive>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        reason = in_brief(str(e), 80) or type(e).__name__
        return f"it is a truncated or damaged PyTorch zip checkpoint (its zip directory cannot be read: {reason})"
    if not any(name.endswith("/data.pkl") for name in names):
        return f"it is a zip archive ({count(len(names), 'file')}) without a data.pkl, not a PyTorch checkpoint"
    return None


# Bytes per element of the storage types torch.save's legacy format names (``torch.FloatStorage`` ...).
_LEGACY_ELEMENT_SIZES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1,
}


class _StandIn:
    """What every class a pickle names becomes while its layout is checked: it takes any arguments and
    state and does nothing, so no code the pickle names is imported or run."""

    _name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_StandIn":  # e.g. what getattr(cls, "method") gave
        return _StandIn()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _BoundedReader:
    """A file seen by the unpickler: a read past the end returns what is there and notes it (a cut-off
    file, told apart from a damaged one), and a length field read from garbage allocates nothing."""

    def __init__(self, f: Any, size: int) -> None:
        self.f, self.size, self.pos, self.hit_end = f, size, f.tell(), False

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        if n is None or n < 0 or n > left:
            self.hit_end = self.hit_end or (n is not None and n > left)
            n = left
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = self.f.readline(self.size - self.pos)
        self.pos += len(line)
        if not line.endswith(b"\n"):
            self.hit_end = True
        return line


class _LayoutUnpickler(pickle.Unpickler):
    """Unpickles with stand-ins for every class (nothing is imported or called) and records the storages
    the pickled object refers to: (key, storage type name, number of elements)."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[str, Any]] = {}

    def find_class(self, module: str, name: str) -> type:
        return type(name, (_StandIn,), {"_name": name})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":  # the first mention is what was saved
            self.storages.setdefault(str(pid[2]), (getattr(pid[1], "_name", ""), pid[4]))
        return _StandIn()


def _legacy_pickle_problem(path: Path, size: int) -> Optional[str]:
    """torch.save's legacy format: five pickles (its magic number, protocol version, system info, the
    object, the sorted list of storage keys), then each storage's element count (8 bytes) and data. The
    pickles are read with stand-ins for every class they name (nothing of them runs), and the storages'
    records are walked to their end, so a file cut off anywhere (even right after the magic number) is
    caught, reading the pickles and 8 bytes per storage, never the tensor data."""
    with open(path, "rb") as f:
        reader = _BoundedReader(f, size)
        parts = ("magic number", "protocol version", "system information", "pickled object", "storage list")
        values: list[Any] = []
        for part in parts:
            unpickler = _LayoutUnpickler(reader)
            try:
                values.append(unpickler.load())
            except Exception as e:  # noqa: BLE001 - garbage makes the unpickler raise all kinds of errors
                if not values:  # (the first pickle: the earlier message, also for a file cut off inside it)
                    return "it starts with a pickle opcode but is not a PyTorch checkpoint, or is cut off"
                if reader.hit_end or reader.pos >= size:
                    return f"it is a truncated PyTorch checkpoint (legacy format: it ends inside its {part})"
                return (f"it is a damaged PyTorch checkpoint (legacy format: its {part} cannot be read: "
                        f"{in_brief(str(e), 80) or type(e).__name__})")
            if part == "magic number" and values[0] != TORCH_MAGIC_NUMBER:
                return "it is a pickle, but not a PyTorch checkpoint (it does not open with torch.save's magic number)"
            if part == "pickled object":
                storages = unpickler.storages
        sys_info, keys = values[2], values[4]
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            return "it is a damaged PyTorch checkpoint (legacy format: its storage list is not a list of keys)"
        order = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"
        offset = reader.pos
        for key in keys:
            kind, numel = storages.get(key, ("", None))
            element_size = _LEGACY_ELEMENT_SIZES.get(kind)
            if element_size is None:  # a storage type this check does not know: nothing more to say
                return None
            if offset + 8 > size:
                return "it is a truncated PyTorch checkpoint (legacy format: it ends inside its tensor data)"
            f.seek(offset)
            recorded = int.from_bytes(f.read(8), order)
            if isinstance(numel, int) and recorded != numel:
                return (f"it is a damaged PyTorch checkpoint (legacy format: storage {key!r} records {recorded} "
                        f"elements where its pickle says {numel})")
            offset += 8 + recorded * element_size
        if offset > size:
            return (f"it is a truncated PyTorch checkpoint (legacy format: its tensor data end at byte {offset}, "
                    f"the file has {size})")
    return None


def _describe_garbage(path: Path, lfs_hint: bool = True) -> str:
    """A hint about what a non-checkpoint file actually is (error pages and LFS pointers are common).
    ``lfs_hint``: suggest `git lfs pull` for a pointer (of no use for a file fetched from the Hub)."""
    with open(path, "rb") as f:
        head = f.read(256)
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        if not lfs_hint:
            return "it is a Git LFS pointer, not the weights"
        return "it is a Git LFS pointer, not the weights (fetch the real file, e.g. with `git lfs pull`)"
    if text.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page (an error or login page saved instead of the weights)"
    if text.startswith(b"{"):
        return "it looks like JSON text, not weights"
    return "it is neither a safetensors file nor a PyTorch checkpoint"


# what to do about a damaged file: most come from an interrupted download, some are the user's own
REDO = "delete it and download it again (or save it again, if it is your own file)"


def check_checkpoint_file(path: PathLike, *, sha256: Optional[str] = None) -> str:
    """The format of a file that can be read as a checkpoint ('safetensors' or 'pth', from its first
    bytes); else the one-line error that reading it gives (:func:`read_checkpoint`, so ``convert`` and
    every ``--weights``): no such file (a :class:`WeightsOptionError`), not a file, unreadable, empty, a
    sha256 other than ``sha256``, or content that is no checkpoint's (whatever its name's suffix)."""
    p = Path(path)
    if _readable_size(p) == 0:
        raise WeightsError(
            f"weights file {p} is empty (0 bytes), probably an interrupted download; {REDO}"
        )
    if sha256:
        got = sha256_file(p)
        if got.lower() != sha256.lower():
            raise WeightsError(
                f"sha256 mismatch for {p}: expected {sha256.lower()}, got {got}; the file is corrupt or not the "
                "published one, remove it and download it again"
            )
    try:
        kind = sniff_format(p)
        if kind is None:
            raise WeightsError(f"{p} is not a checkpoint: {_describe_garbage(p)}")
    except OSError as e:
        raise WeightsError(f"cannot read weights file {p}: {e.strerror or e}") from None
    return kind
