"""Demucs v4 (htdemucs, MIT) vocals separation through the ``demucs-infer`` package.

Why ``demucs-infer``: it is the inference half of Demucs v4 kept working on PyTorch 2.x, and it
needs only einops, julius, pyyaml and soundfile. ``demucs`` 4.x pulls huggingface-hub, sphn and
lameenc, and older releases torchaudio, whose PyPI build for torch 2.13 is CUDA-only and does not
import on a CPU torch. Only the model class (``HTDemucs``) and ``apply_model`` (chunked overlap-add)
are used; loading the weight file is ours (engine.weights), never the package's unpickler.

The weight file is Demucs' own ``955717e8-8726e21a.th``: a torch pickle of
``{"klass": HTDemucs, "args": [...], "kwargs": {...}, "state": state_dict, ...}``. Its class
reference and ``fractions.Fraction`` (the training segment) become inert stand-ins; the class
name is checked, the real HTDemucs is built from the kwargs, and the state dict must match its
keys and shapes exactly.

    song (n, ch) at sr -> 44.1 kHz stereo -> normalise (mean/std of the mono mix)
        -> apply_model: 7.8 s segments, 25 % overlap, triangular cross-fade
        -> vocals; accompaniment = song - vocals (so the stems sum to the song exactly)
        -> back to sr and ch
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.dsp.resample import resample
from engine.errors import ModelFormatError, VoiceError
from engine.separation.base import ProgressFn, SeparationCancelled, Stems, check_cancel

WEIGHTS_FILE = "955717e8-8726e21a.th"
WEIGHTS_URL = f"https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/{WEIGHTS_FILE}"
WEIGHTS_SHA256 = "8726e21a993978c7ba086d3872e7608d7d5bfca646ca4aca459ffda844faa8b4"
WHAT = "Demucs htdemucs separation model"
# The class names a Demucs package may record for HTDemucs (upstream, and this package's own saves).
HTDEMUCS_CLASS_NAMES = ("demucs.htdemucs.HTDemucs", "demucs_infer.htdemucs.HTDemucs")
INERT_PREFIXES = ("demucs.", "demucs_infer.", "fractions.Fraction")
MODEL_SAMPLE_RATE = 44100
OVERLAP = 0.25


def weights_path(models_dir: Path) -> Path:
    """Where the weights go: the models folder (the caller's; engine.api passes the data folder's)."""
    return Path(models_dir) / WEIGHTS_FILE


def missing_weights_message(models_dir: Path) -> str:
    return (f"The {WHAT} {WEIGHTS_FILE} is not installed: run 'autovoice song --fetch-model' on a machine "
            f"with internet (it downloads {WEIGHTS_URL} and checks its SHA-256), or copy the file "
            f"you have into {Path(models_dir)}.")


Downloader = Callable[..., Path]  # download(url, dest, sha256=, progress=, timeout_s=) -> dest, atomic


def fetch_weights(models_dir: Path, download: Downloader, url: str = WEIGHTS_URL, sha256: str = WEIGHTS_SHA256,
                  progress: Callable[[int, int | None], None] | None = None, timeout_s: float = 30.0) -> Path:
    """Download the weights once into the models folder, SHA-256 checked; a file already there with
    the right hash is kept. ``download`` is the product's one downloader (engine.api passes it: this
    floor may not import the voices package where it lives)."""
    dest = weights_path(models_dir)
    if dest.is_file() and _sha256(dest) == sha256:
        return dest
    return download(url, dest, sha256=sha256, progress=progress, timeout_s=timeout_s)


def _fraction(obj: Any) -> Any:
    """An inert ``fractions.Fraction`` from the pickle, as a real Fraction (a plain number)."""
    from engine.weights import InertObject

    if isinstance(obj, InertObject) and obj.source_name == "fractions.Fraction":
        try:
            return Fraction(*[a for a in obj._args if isinstance(a, (int, str))])
        except (TypeError, ValueError, ZeroDivisionError):
            raise ModelFormatError("The model's training segment is not a valid fraction.") from None
    return obj


def load_htdemucs(path: str | Path):
    """Build the real HTDemucs from a Demucs weight file, verified; returned in eval()."""
    import torch
    from demucs_infer.htdemucs import HTDemucs

    from engine.weights import InertObject, load_weights, plain

    path = Path(path)
    pkg = load_weights(path, what=WHAT, inert_prefixes=INERT_PREFIXES)
    if not isinstance(pkg, dict) or not {"klass", "kwargs", "state"} <= set(pkg):
        raise ModelFormatError(f"{path.name} is not a Demucs model file (it has no klass/kwargs/state); use {WEIGHTS_FILE}.")
    klass = pkg["klass"]
    kname = klass.source_name if isinstance(klass, type) and issubclass(klass, InertObject) else repr(klass)
    if kname not in HTDEMUCS_CLASS_NAMES:
        raise ModelFormatError(f"{path.name} holds a Demucs model of class {kname}, not HTDemucs; AutoVoice runs the htdemucs model ({WEIGHTS_FILE}).")
    args = plain([_fraction(a) for a in (pkg.get("args") or [])])
    kwargs = {k: plain(_fraction(v)) for k, v in dict(pkg["kwargs"]).items()}
    accepted = inspect.signature(HTDemucs).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    sources = kwargs.get("sources") or (args[0] if args else None)
    if not isinstance(sources, list) or "vocals" not in sources:
        raise ModelFormatError(f"{path.name} separates {sources!r}, which has no 'vocals' stem; use {WEIGHTS_FILE}.")
    try:
        model = HTDemucs(*args, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelFormatError(f"{path.name} describes an HTDemucs that cannot be built ({exc}).") from None
    state = pkg["state"]
    if not isinstance(state, dict) or state.get("__quantized"):
        raise ModelFormatError(f"{path.name} is a quantised Demucs model, which AutoVoice does not run; use {WEIGHTS_FILE}.")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    bad = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or bad:
        raise ModelFormatError(
            f"{path.name} does not fit the HTDemucs it describes ({len(missing)} missing, {len(extra)} unexpected and "
            f"{len(bad)} mis-shaped tensors); download {WEIGHTS_FILE} again.")
    model.load_state_dict({k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}, strict=True)
    return model.eval()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class DemucsSeparator:
    """htdemucs on the GPU when torch sees one, else on the CPU."""

    name = "htdemucs"

    def __init__(self, model, weights_sha256: str, device: str | None = None, note: str | None = None):
        import torch

        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.weights_sha256 = weights_sha256
        self.note = note

    @classmethod
    def from_models_dir(cls, models_dir: Path, device: str | None = None) -> "DemucsSeparator":
        path = weights_path(models_dir)
        if not path.is_file():
            raise VoiceError(missing_weights_message(models_dir))
        return cls.from_file(path, device=device)

    @classmethod
    def from_file(cls, path: str | Path, device: str | None = None) -> "DemucsSeparator":
        try:
            import demucs_infer  # noqa: F401
        except ImportError:
            raise VoiceError("The htdemucs separator needs the demucs-infer package; run: pip install 'autovoice[neural]'.") from None
        path = Path(path)
        model = load_htdemucs(path)  # keys and shapes verified against the real class
        digest = _sha256(path)
        note = None
        if digest != WEIGHTS_SHA256:
            note = (f"{path.name} is not the published htdemucs file (its SHA-256 differs), but its weights fit "
                    "HTDemucs, so it is used as it is; results may differ from the measured ones.")
        return cls(model, digest, device=device, note=note)

    @property
    def cache_id(self) -> str:
        return f"htdemucs-{self.weights_sha256[:16]}"

    def separate(self, mix: np.ndarray, sample_rate: int, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> Stems:
        import torch
        from demucs_infer.apply import apply_model

        mix = np.asarray(mix, dtype=np.float32)
        n, ch = mix.shape
        sr_m = int(self.model.samplerate)
        x = np.stack([resample(mix[:, c], sample_rate, sr_m) for c in range(ch)], axis=0)
        if ch == 1:
            x = np.repeat(x, 2, axis=0)
        x = x[:2]
        ref = x.mean(axis=0)
        mean, std = float(ref.mean()), float(ref.std()) or 1.0
        t = torch.from_numpy((x - mean) / std)[None]
        segment_len = int(sr_m * float(self.model.segment))
        stride = int((1 - OVERLAP) * segment_len)
        total = max(1, len(range(0, t.shape[-1], stride)))
        done = [0]

        def callback(d: dict) -> None:
            check_cancel(cancel)
            if d.get("state") == "end":
                done[0] += 1
                if progress:
                    progress(min(1.0, done[0] / total))

        check_cancel(cancel)
        with torch.inference_mode():
            try:
                out = apply_model(self.model, t, shifts=0, split=True, overlap=OVERLAP, progress=False,
                                  device=self.device, callback=callback)
            except SeparationCancelled:
                raise
            except RuntimeError as exc:
                if "out of memory" in str(exc).lower():
                    raise VoiceError("The GPU ran out of memory separating this song; close other GPU programs or use the CPU.") from None
                raise
        voc = out[0, self.model.sources.index("vocals")].cpu().numpy() * std + mean  # (2, n_m)
        if ch == 1:
            voc = voc.mean(axis=0, keepdims=True)
        vocals = np.stack([resample(voc[c].astype(np.float32), sr_m, sample_rate) for c in range(voc.shape[0])], axis=1)
        vocals = _fit(vocals, n)
        if vocals.shape[1] != ch:  # more than two channels: the stereo estimate on the first two, silence elsewhere
            full = np.zeros((n, ch), np.float32)
            full[:, :2] = vocals
            vocals = full
        return Stems(vocals.astype(np.float32), (mix - vocals).astype(np.float32), sample_rate)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) >= n:
        return y[:n]
    return np.concatenate([y, np.zeros((n - len(y), y.shape[1]), y.dtype)])
