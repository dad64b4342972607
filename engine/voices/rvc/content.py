"""Content encoders as RVC uses them: 16 kHz audio -> content features for a v1 or v2 voice.

RVC feeds 16 kHz audio through a fairseq HuBERT-base model (``hubert_base.pt``; in practice the
ContentVec weights in HuBERT's layout) and takes the layer its version names
(:mod:`engine.voices.rvc.versions`). The model is :mod:`engine.voices.rvc.hubert`; reading its
checkpoints is :mod:`engine.voices.rvc.hubert_weights`; this module wraps either that model
(:class:`TorchContentEncoder`) or an ONNX export (:class:`OnnxContentEncoder`) behind one interface.

Frames: ``N`` samples give ``(N - 400) // 320 + 1`` frames (50 per second). RVC's pitch runs at 100
frames per second (hop 160); :func:`features_to_f0_rate` repeats the last frame once and upsamples x2
(nearest), as RVC's realtime code does, then trims to the pitch frame count::

    audio   |-------- N samples --------|
    hubert  [0][1][2]...[T-1] + [T-1]        (T = (N-400)//320 + 1, last frame repeated)
    x2      [0 0][1 1]...[T-1 T-1][T-1 T-1]  -> trimmed/padded to n_f0 frames (N//160 in RVC)

ONNX content encoders (RVC's ``vec-256-layer-9.onnx`` / ``vec-768-layer-12.onnx``: ``(1, 1, N)`` in,
``(1, C, T)`` out) are supported through onnxruntime; the layout is detected from the shapes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.assets import CONTENT_ENCODER, missing_file_message
from engine.voices.rvc.hubert import HubertConfig, HubertModel, hubert_base_config  # noqa: F401 (re-exported)
from engine.voices.rvc.hubert_weights import (  # noqa: F401 (re-exported)
    config_from_checkpoint,
    hf_to_fairseq_state_dict,
    load_hf_hubert,
    load_hubert_checkpoint,
)
from engine.voices.rvc.versions import CONTENT_LAYERS, FEATURE_DIMS, Version

SAMPLE_RATE = 16000
HOP_SAMPLES = 320
RECEPTIVE_FIELD_SAMPLES = 400
F0_HOP_SAMPLES = 160


# File names users have for content encoders, in the order we look for them.
CONTENT_ENCODER_FILE_NAMES = (
    "hubert_base.pt",
    "contentvec_base.pt",
    "checkpoint_best_legacy_500.pt",
    "vec-768-layer-12.onnx",
    "vec-256-layer-9.onnx",
)


def content_frames(n_samples: int) -> int:
    """Number of HuBERT frames for ``n_samples`` of 16 kHz audio (0 below 400 samples)."""
    if n_samples < RECEPTIVE_FIELD_SAMPLES:
        return 0
    return (n_samples - RECEPTIVE_FIELD_SAMPLES) // HOP_SAMPLES + 1


def features_to_f0_rate(feats: torch.Tensor, n_f0_frames: int) -> torch.Tensor:
    """Upsample content features from 50 to 100 frames/s, aligned with pitch frames, as RVC does.

    feats: (B, T, C) -> (B, n_f0_frames, C). The last frame is repeated once before the x2 nearest
    upsampling (RVC's realtime path), then the result is trimmed, or padded by repeating its last
    frame, to ``n_f0_frames``.
    """
    if feats.dim() != 3:
        raise ValueError(f"feats must be (B, T, C), got {tuple(feats.shape)}")
    if feats.shape[1] == 0:
        raise ValueError("feats has no frames: the audio was shorter than 400 samples (25 ms at 16 kHz)")
    feats = torch.cat((feats, feats[:, -1:, :]), dim=1)
    feats = feats.repeat_interleave(2, dim=1)
    if feats.shape[1] >= n_f0_frames:
        return feats[:, :n_f0_frames, :]
    pad = feats[:, -1:, :].expand(-1, n_f0_frames - feats.shape[1], -1)
    return torch.cat((feats, pad), dim=1)



def _as_batch(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"audio must be (N,) or (B, N), got {tuple(x.shape)}")
    return x.float()


class ContentEncoder:
    """Turns 16 kHz audio into RVC content features. Subclasses: torch HuBERT, ONNX."""

    path: Path | None = None
    versions: tuple[str, ...] = ()

    def output_dim(self, version: Version) -> int:
        return FEATURE_DIMS[version]

    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        """audio: (N,) or (B, N) float at 16 kHz -> (B, T, 256 for v1 | 768 for v2) float32 on CPU or
        the encoder's device, T = :func:`content_frames` (N)."""
        raise NotImplementedError

    def _check_version(self, version: str) -> None:
        if version not in CONTENT_LAYERS:
            raise VoiceError(f"Unknown RVC model version {version!r}: it must be v1 or v2.")
        if version not in self.versions:
            have = " and ".join(f"{v} ({FEATURE_DIMS[v]}-d)" for v in self.versions) or "no"
            name = self.path.name if self.path else "This content encoder"
            raise VoiceError(
                f"{name} gives {have} features but the voice is an RVC {version} model needing {FEATURE_DIMS[version]}-d features; use RVC's hubert_base.pt."
            )


class TorchContentEncoder(ContentEncoder):
    """HuBERT/ContentVec in torch; serves both v1 (layer 9 + final_proj) and v2 (layer 12)."""

    def __init__(self, model: HubertModel, path: Path | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        # dtype=torch.float16 on a GPU is what RVC does with is_half; features come out in ``dtype``.
        self.model = model.to(device=device, dtype=dtype).eval()
        self._dtype = dtype
        self.path = path
        self.device = torch.device(device)
        versions = []
        n = model.cfg.num_layers
        if n >= CONTENT_LAYERS["v1"][0] and model.final_proj is not None:
            versions.append("v1")
        if n >= CONTENT_LAYERS["v2"][0]:
            versions.append("v2")
        self.versions = tuple(versions)

    def output_dim(self, version: Version) -> int:
        return self.model.cfg.final_dim if version == "v1" else self.model.cfg.embed_dim

    def int8(self) -> "TorchContentEncoder":
        """A copy of this encoder whose linear layers (the transformer's, ~90 % of its multiply-adds)
        run in int8 (torch dynamic quantisation: weights int8 per tensor, activations quantised per
        call), for the live path on a CPU. ``self`` where that cannot work (a GPU, fp16, or a torch
        without quantised kernels). The copy costs ~90 MB; the float model stays for offline work."""
        if self.device.type != "cpu" or next(self.model.parameters()).dtype != torch.float32:
            return self
        try:
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch >= 2.10 points at torchao; the kernels are the same
                model = quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
        except (ImportError, AttributeError, RuntimeError):
            return self
        out = TorchContentEncoder.__new__(TorchContentEncoder)
        out.model, out.path, out.device, out.versions = model.eval(), self.path, self.device, self.versions
        out._dtype = torch.float32
        return out

    @torch.inference_mode()
    def window_stats(self, window: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The conv front end's group-norm statistics over ``window`` ((N,) 16 kHz): see
        ``HubertModel.feature_extractor.window_stats``."""
        return self.model.feature_extractor.window_stats(_as_batch(window).to(self.device, dtype=self._dtype))

    @torch.inference_mode()
    def first_conv_sums(self, audio: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Per content frame sums of the first conv's outputs and squares, (512, K) float64 each, from
        which :meth:`stats_from_sums` makes :meth:`window_stats`; None without a group norm."""
        if self.model.feature_extractor.window_stats(torch.zeros(1, 400, device=self.device, dtype=self._dtype)) is None:
            return None
        s1, s2 = self.model.feature_extractor.first_conv_sums(_as_batch(audio).to(self.device, dtype=self._dtype))
        return s1[0].cpu().numpy(), s2[0].cpu().numpy()

    def stats_from_sums(self, s1: np.ndarray, s2: np.ndarray, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(512, K) sums over ``count`` outputs -> (mean, variance), each (1, 512, 1) float32."""
        mean = s1.sum(axis=1) / count
        var = np.maximum(s2.sum(axis=1) / count - mean**2, 0.0)
        as_t = (lambda a: torch.from_numpy(a.astype(np.float32)).reshape(1, -1, 1).to(self.device))
        return as_t(mean), as_t(var)

    @torch.inference_mode()
    def conv_features(self, audio: np.ndarray | torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The local half of the encoder: (N,) 16 kHz -> (1, 512, T) float32 on the CPU, normalised
        with ``stats`` (:meth:`window_stats` of the longer signal ``audio`` is part of; default its
        own), so a slice gives the frames the whole window would."""
        x = _as_batch(audio).to(self.device, dtype=self._dtype)
        return self.model.feature_extractor(x, stats).float().cpu()

    @torch.inference_mode()
    def encode_conv(self, conv: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        """The transformer half: conv features (1, 512, T) -> (1, T, 256 | 768) float32."""
        self._check_version(version)
        layer, project = CONTENT_LAYERS[version]
        c = torch.as_tensor(conv).to(self.device, dtype=self._dtype)
        if c.dim() == 2:
            c = c.unsqueeze(0)
        return self.model(None, output_layer=layer, project=project, conv=c).float()

    @torch.inference_mode()
    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        self._check_version(version)
        layer, project = CONTENT_LAYERS[version]
        x = _as_batch(audio).to(self.device, dtype=self._dtype)
        if x.shape[1] < RECEPTIVE_FIELD_SAMPLES:
            return x.new_zeros((x.shape[0], 0, self.output_dim(version)))
        return self.model(x, output_layer=layer, project=project)


class OnnxContentEncoder(ContentEncoder):
    """An ONNX content encoder: one input (``source``/``audio``/..., shaped (1, N) or (1, 1, N)),
    first output (B, C, T) or (B, T, C); C = 256 gives v1 features, 768 gives v2."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelFormatError(f"{self.path.name} could not be opened as an ONNX model ({str(exc).splitlines()[0][:160]}); check the file.") from None
        inputs = self.session.get_inputs()
        float_inputs = [i for i in inputs if "float" in i.type]
        if len(float_inputs) != 1:
            raise ModelFormatError(f"{self.path.name} is not a content encoder: it should take one audio input, not {[i.name for i in inputs]}.")
        self.input = float_inputs[0]
        self.other_inputs = [i for i in inputs if i is not self.input]
        self.input_rank = len(self.input.shape)
        if self.input_rank not in (2, 3):
            raise ModelFormatError(f"{self.path.name} takes a {self.input_rank}-D input; a content encoder takes (1, N) or (1, 1, N) audio.")
        # Probe once with 1 s of silence to learn the feature size and layout.
        probe = self._run(np.zeros(SAMPLE_RATE, dtype=np.float32))
        self.dim = probe.shape[2]
        if self.dim not in (256, 768):
            raise ModelFormatError(f"{self.path.name} produces {self.dim}-d features; RVC needs 256 (v1) or 768 (v2).")
        self.versions = ("v1",) if self.dim == 256 else ("v2",)

    def _feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {self.input.name: x.reshape((1,) * (self.input_rank - 1) + (-1,))}
        for extra in self.other_inputs:  # e.g. a padding mask
            if "bool" in extra.type:
                feeds[extra.name] = np.zeros((1, x.shape[-1]), dtype=bool)
            else:
                raise ModelFormatError(f"{self.path.name} needs an input {extra.name!r} we cannot provide; use an encoder exported with audio as its only input.")
        return feeds

    def _run(self, audio: np.ndarray) -> np.ndarray:
        """(N,) -> (1, T, C)"""
        out = np.asarray(self.session.run(None, self._feeds(audio.astype(np.float32, copy=False)))[0])
        if out.ndim != 3:
            raise ModelFormatError(f"{self.path.name} outputs a {out.ndim}-D array; a content encoder outputs (1, C, T) or (1, T, C).")
        t = content_frames(audio.shape[-1])
        if out.shape[1] == t and out.shape[2] != t:
            return out
        if out.shape[2] == t and out.shape[1] != t:
            return out.transpose(0, 2, 1)
        # Ambiguous (T equals C, or an unusual frame count): trust the known feature sizes.
        return out if out.shape[2] in (256, 768) else out.transpose(0, 2, 1)

    def output_dim(self, version: Version) -> int:
        return self.dim

    def encode(self, audio: np.ndarray | torch.Tensor, version: Version) -> torch.Tensor:
        self._check_version(version)
        x = _as_batch(audio).cpu().numpy()
        if x.shape[1] < RECEPTIVE_FIELD_SAMPLES:
            return torch.zeros((x.shape[0], 0, self.dim))
        return torch.from_numpy(np.concatenate([self._run(row) for row in x], axis=0).astype(np.float32, copy=False))


def load_content_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ContentEncoder:
    """Open a content encoder file: fairseq ``.pt`` (HuBERT/ContentVec) or ``.onnx``.

    Raises VoiceError (missing file) or ModelFormatError (anything else wrong), in one sentence.
    """
    path = Path(path)
    if not path.is_file():
        raise VoiceError(missing_file_message(path.name, CONTENT_ENCODER.what, path.parent))
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and path.suffix.lower() not in (".pt", ".pth", ".bin")):
        return OnnxContentEncoder(path, providers=_onnx_providers(device))
    if path.suffix.lower() == ".safetensors":
        return TorchContentEncoder(load_hf_hubert(path), path=path, device=device, dtype=dtype)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return TorchContentEncoder(load_hubert_checkpoint(path), path=path, device=device, dtype=dtype)
    raise ModelFormatError(
        f"{path.name} is neither a PyTorch checkpoint nor an ONNX model; use RVC's hubert_base.pt or a vec-*-layer-*.onnx content encoder."
    )


def _onnx_providers(device: str | torch.device) -> list[str]:
    if torch.device(device).type == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def find_content_encoder(models_dir: str | os.PathLike, version: Version | None = None) -> Path:
    """The content encoder file in ``models_dir`` (``hubert_base.pt`` first; an ONNX one whose
    size matches ``version`` otherwise), or VoiceError naming the file to get and where to put it."""
    folder = Path(models_dir)
    for name in CONTENT_ENCODER_FILE_NAMES:
        if version == "v1" and name == "vec-768-layer-12.onnx":
            continue
        if version == "v2" and name == "vec-256-layer-9.onnx":
            continue
        if (folder / name).is_file():
            return folder / name
    raise VoiceError(missing_file_message(CONTENT_ENCODER.file_name, CONTENT_ENCODER.what, folder))
