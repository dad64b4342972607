"""Files the RVC front end needs besides the voice itself: where they come from, where they go.

RVC voices need a content encoder (``hubert_base.pt``, or an ONNX ``vec-*-layer-*.onnx``) and, for
the RMVPE pitch tracker, ``rmvpe.pt``. Users usually already have these from the RVC WebUI; they
come from the RVC project's Hugging Face repository ``lj1995/VoiceConversionWebUI``. The engine
passes ``models_dir`` (platformdirs' user data dir + ``/models``).

:func:`download_asset` fetches one of them where the machine has internet, checking a SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.errors import VoiceError

HF_REPO = "lj1995/VoiceConversionWebUI"
HF_BASE_URL = f"https://huggingface.co/{HF_REPO}/resolve/main"


@dataclass(frozen=True)
class Asset:
    """One downloadable support file."""

    file_name: str
    what: str  # shown to the user: "the content encoder"
    url: str
    sha256: str | None = None  # None: not pinned (the file is still hashed and the hash reported)


CONTENT_ENCODER = Asset("hubert_base.pt", "the HuBERT/ContentVec content encoder", f"{HF_BASE_URL}/hubert_base.pt")
RMVPE = Asset("rmvpe.pt", "the RMVPE pitch model", f"{HF_BASE_URL}/rmvpe.pt")

KNOWN_ASSETS = {a.file_name: a for a in (CONTENT_ENCODER, RMVPE)}


def missing_file_message(file_name: str, what: str, models_dir: str | os.PathLike | None) -> str:
    """One sentence telling the user which file is missing, where to get it and where to put it."""
    where = f"put it in {Path(models_dir)}" if models_dir is not None else "pass its path"
    return (
        f"{what[:1].upper()}{what[1:]} file {file_name} was not found: download it from the RVC "
        f"project's Hugging Face repository {HF_REPO} ({HF_BASE_URL}/{file_name}) and {where}."
    )


def require_file(
    file_name: str, what: str, models_dir: str | os.PathLike | None, path: str | os.PathLike | None = None
) -> Path:
    """Return ``path`` (or ``models_dir/file_name``) if it exists, else raise VoiceError in one sentence."""
    candidate = Path(path) if path is not None else (Path(models_dir) / file_name if models_dir else None)
    if candidate is not None and candidate.is_file():
        return candidate
    name = candidate.name if candidate is not None else file_name
    folder = candidate.parent if path is not None and candidate is not None else models_dir
    raise VoiceError(missing_file_message(name, what, folder))


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


ProgressCallback = Callable[[int, int | None], None]  # (bytes_done, bytes_total or None)


def download_asset(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout_s: float = 30.0,
    chunk_bytes: int = 1 << 16,
) -> Path:
    """Download ``url`` to ``dest`` atomically; verify ``sha256`` if given.

    The file is written next to ``dest`` under a temporary name and renamed only once complete and
    verified, so an interrupted or corrupt download never replaces (or masquerades as) a good file.
    Raises VoiceError in one sentence on network errors or a hash mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                if progress is not None:
                    progress(0, total)
                while chunk := resp.read(chunk_bytes):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except OSError as exc:  # URLError and HTTPError are OSErrors
            raise VoiceError(f"Could not download {dest.name} from {url}: {exc}; check the connection or download it by hand into {dest.parent}.") from None
        if total is not None and done != total:
            raise VoiceError(f"The download of {dest.name} from {url} stopped after {done} of {total} bytes; try again.")
        got = digest.hexdigest()
        if sha256 is not None and got.lower() != sha256.lower():
            raise VoiceError(
                f"The downloaded {dest.name} has SHA-256 {got}, not the expected {sha256}; it was discarded, try again or download it by hand."
            )
        os.replace(tmp_name, dest)
        tmp_name = None
        return dest
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
