"""Running RVC synthesizers stored as ONNX, in either public contract (see ``export.py``).

The contract is told by the graph's input names:

=========  ==========================================================  ==========================
contract   inputs                                                      prior noise
=========  ==========================================================  ==========================
rvc        phone, phone_lengths, pitch, pitchf, ds, rnd                ``rnd`` input (we pass
           (no-pitch: phone, phone_lengths, ds, rnd)                   0.66666 * N(0, 1))
wokada     feats, p_len, pitch, pitchf, sid (no-pitch: feats, p_len,   drawn inside the graph
           sid; newer files add skip_head, return_length,
           formant_length, which we fill with the whole window)
=========  ==========================================================  ==========================

onnxruntime runs on CUDA when the CUDA provider is installed and works, else on the CPU; ``providers``
says what the session really uses (``session.get_providers()``), because onnxruntime-gpu silently
falls back to the CPU when CUDA cannot start; ``fallback_reason`` then says so in one sentence (and
it is logged once). On CUDA, ``infer`` runs through I/O binding: inputs are uploaded once (or read in
place when they are CUDA torch tensors), the output is written on the device and copied back once.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.versions import FEATURE_DIMS, VERSION_OF_DIM, sample_rate_from_name

Z_NOISE_SCALE = 0.66666
RVC_INPUTS = ("phone", "phone_lengths", "pitch", "pitchf", "ds", "rnd")
RVC_NONO_INPUTS = ("phone", "phone_lengths", "ds", "rnd")
WOKADA_INPUTS = ("feats", "p_len", "pitch", "pitchf", "sid")
WOKADA_NONO_INPUTS = ("feats", "p_len", "sid")
WOKADA_OPTIONAL = ("skip_head", "return_length", "formant_length")
PINNED_PREFIX = "pinned_random_"
CUDA_PROVIDER = "CUDAExecutionProvider"
log = logging.getLogger(__name__)


def detect_contract(input_names: list[str] | tuple[str, ...], name: str = "the model") -> tuple[str, bool]:
    """(contract, takes_pitch) from a graph's input names; ModelFormatError if it follows neither."""
    names = {n for n in input_names if not n.startswith(PINNED_PREFIX)}
    if names == set(RVC_INPUTS):
        return "rvc", True
    if names == set(RVC_NONO_INPUTS):
        return "rvc", False
    core = names - set(WOKADA_OPTIONAL)
    if core == set(WOKADA_INPUTS):
        return "wokada", True
    if core == set(WOKADA_NONO_INPUTS):
        return "wokada", False
    raise ModelFormatError(
        f"{name} is an ONNX model with inputs {', '.join(sorted(names)) or '(none)'}, which is neither "
        f"RVC's export (phone, phone_lengths, pitch, pitchf, ds, rnd) nor w-okada's (feats, p_len, "
        f"pitch, pitchf, sid); export the voice from its .pth with AutoVoice or RVC."
    )


def choose_providers() -> list[str]:
    """CUDA first when this onnxruntime build has it, the CPU always as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def pin_random_nodes(proto: Any) -> tuple[Any, list[str]]:
    """Turn every random node (RandomNormalLike, RandomUniform, ...) into a graph input named
    ``pinned_random_<i>`` (i in graph order), so a test can feed the exact noise torch used."""
    import onnx

    graph = proto.graph
    pinned: list[str] = []
    kept = []
    for node in graph.node:
        if node.op_type in ("RandomNormalLike", "RandomNormal", "RandomUniformLike", "RandomUniform"):
            name = f"{PINNED_PREFIX}{len(pinned)}"
            pinned.append(name)
            kept.append(onnx.helper.make_node("Identity", [name], list(node.output)))
            dtype = onnx.TensorProto.FLOAT
            for attr in node.attribute:
                if attr.name == "dtype":
                    dtype = attr.i
            graph.input.append(onnx.helper.make_tensor_value_info(name, dtype, None))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return proto, pinned


@dataclass
class OnnxSynthesizer:
    """An ONNX RVC synthesizer ready to run; ``infer`` mirrors ``SynthesizerTrn.infer``."""

    path: str
    contract: str  # "rvc" or "wokada"
    f0: bool
    feature_dim: int
    sample_rate: int
    version: str  # "v1"/"v2" from metadata or the feature width
    providers: list[str]  # what the session actually uses, best first
    metadata: dict[str, str] = field(default_factory=dict)
    pinned_inputs: list[str] = field(default_factory=list)
    session: Any = field(default=None, repr=False)
    float_type: Any = np.float32
    fallback_reason: str = ""  # why CUDA was wanted and the session runs on the CPU ('' otherwise)
    use_io_binding: bool = False  # on by default when the session really runs on CUDA

    @property
    def hop_samples(self) -> int:
        return self.sample_rate // 100

    @property
    def supports_formant(self) -> bool:
        """Whether the graph can stretch its decoder (w-okada's ``formant_length`` input). RVC's own
        export contract has no such input, so formant shifting cannot run inside those graphs."""
        return self.contract == "wokada" and "formant_length" in self._input_names()

    @property
    def provider(self) -> str:
        return self.providers[0] if self.providers else "unknown"

    def infer(
        self,
        phone: np.ndarray,
        phone_lengths: np.ndarray | None,
        pitch: np.ndarray | None,
        nsff0: np.ndarray | None,
        sid: int | np.ndarray = 0,
        *,
        noise_z: np.ndarray | None = None,
        noise_nsf: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        formant_length: int | None = None,
    ) -> np.ndarray:
        """phone: (1, T, C) float, phone_lengths: (1,) int64 (None: T), pitch: (1, T) int64,
        nsff0: (1, T) float Hz (both ignored for no-pitch models), sid: speaker id
        -> audio (1, 1, T * hop) float32, or (1, 1, formant_length * hop) when ``formant_length`` is
        given (RVC's ``return_length2``: the decoder stretched to that many frames; only graphs with a
        ``formant_length`` input, see :attr:`supports_formant`).

        noise_z (1, 192, T) standard normal for the prior (RVC contract only; w-okada graphs draw their
        own unless pinned); noise_nsf (1, 1, T * hop) only for graphs loaded with ``pin_noise=True``.
        """
        phone = np.asarray(phone)
        b, t, c = phone.shape
        if c != self.feature_dim:
            raise VoiceError(
                f"{Path(self.path).name} takes {self.feature_dim}-d content features, not {c}-d; "
                f"use a {VERSION_OF_DIM.get(self.feature_dim, 'v2')} content encoder."
            )
        if phone_lengths is None:
            phone_lengths = np.full((b,), t, dtype=np.int64)
        sid_arr = np.asarray(sid, dtype=np.int64).reshape(-1)[:b]
        ft = self.float_type
        feeds: dict[str, np.ndarray] = {}
        if self.contract == "rvc":
            feeds["phone"] = phone.astype(ft)
            feeds["phone_lengths"] = np.asarray(phone_lengths, dtype=np.int64)
            feeds["ds"] = sid_arr
            if noise_z is None:
                rng = rng or np.random.default_rng()
                noise_z = rng.standard_normal((b, self._inter_channels(), t))
            feeds["rnd"] = (np.asarray(noise_z) * Z_NOISE_SCALE).astype(ft)
        else:
            feeds["feats"] = phone.astype(ft)
            feeds["p_len"] = np.asarray(phone_lengths, dtype=np.int64)
            feeds["sid"] = sid_arr
            extra = {"skip_head": 0, "return_length": t, "formant_length": t if formant_length is None else int(formant_length)}
            for name in self._input_names():
                if name in extra:
                    feeds[name] = np.array(extra[name], dtype=np.int64)
        if self.f0:
            if pitch is None or nsff0 is None:
                raise VoiceError(f"{Path(self.path).name} uses pitch: pass pitch and nsff0.")
            feeds["pitch"] = np.asarray(pitch, dtype=np.int64)
            feeds["pitchf"] = np.asarray(nsff0).astype(ft)
        if self.pinned_inputs:
            feeds.update(self._pinned_feeds(b, t, noise_z, noise_nsf))
        if self.use_io_binding:
            audio = self._run_bound(feeds)
        else:
            outputs = self.session.run(None, feeds)
            audio = np.asarray(outputs[self._audio_index()], dtype=np.float32)
        return audio.reshape(b, 1, -1)

    def _run_bound(self, feeds: dict[str, Any]) -> np.ndarray:
        """Run with I/O binding on the session's device: numpy inputs are bound as host buffers
        (one upload each), CUDA torch tensors in place; the audio output stays on the device until
        the one copy back."""
        device = "cuda" if self.provider == CUDA_PROVIDER else "cpu"
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if type(value).__module__.startswith("torch") and value.is_cuda:
                value = value.contiguous()
                binding.bind_input(name, "cuda", value.device.index or 0, _np_dtype(value), list(value.shape),
                                   value.data_ptr())
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        names = [o.name for o in self.session.get_outputs()]
        for name in names:
            binding.bind_output(name, device)
        self.session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        return np.asarray(outputs[self._audio_index()], dtype=np.float32)

    # -- details --

    def _input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def _audio_index(self) -> int:
        names = [o.name for o in self.session.get_outputs()]
        return names.index("audio") if "audio" in names else 0

    def _inter_channels(self) -> int:
        for i in self.session.get_inputs():
            if i.name == "rnd" and isinstance(i.shape[1], int):
                return i.shape[1]
        return 192

    def _pinned_feeds(self, b, t, noise_z, noise_nsf) -> dict[str, np.ndarray]:
        """Pinned random nodes, in graph order: w-okada's prior noise first (if any), then NSF noise."""
        queue = []
        if self.contract == "wokada":
            if noise_z is None:
                raise VoiceError("pass noise_z for a w-okada model loaded with pin_noise=True")
            queue.append(np.asarray(noise_z))  # the graph scales it by 0.66666 after the random node
        if self.f0:
            if noise_nsf is None:
                raise VoiceError("pass noise_nsf for a model loaded with pin_noise=True")
            queue.append(np.asarray(noise_nsf).reshape(b, -1))
        if len(queue) != len(self.pinned_inputs):
            raise VoiceError(
                f"{Path(self.path).name} has {len(self.pinned_inputs)} random nodes where "
                f"{len(queue)} were expected; it cannot be run with pinned noise."
            )
        return {name: arr.astype(self.float_type) for name, arr in zip(self.pinned_inputs, queue)}


def _read_metadata(proto: Any) -> dict[str, str]:
    meta = {p.key: p.value for p in proto.metadata_props}
    if "metadata" in meta:  # w-okada's JSON blob
        try:
            blob = json.loads(meta["metadata"])
        except ValueError:
            blob = {}
        if isinstance(blob, dict):
            if "samplingRate" in blob and "sr" not in meta:
                meta["sr"] = str(blob["samplingRate"])
            if "embChannels" in blob and "feature_dim" not in meta:
                meta["feature_dim"] = str(blob["embChannels"])
            model_type = str(blob.get("modelType", ""))
            if "version" not in meta or meta.get("version") not in ("v1", "v2"):
                if "v2" in model_type.lower():
                    meta["version"] = "v2"
                elif model_type:
                    meta["version"] = "v1"
    return meta


def load_onnx_synthesizer(
    path: str | os.PathLike, *, providers: list[str] | None = None, pin_noise: bool = False
) -> OnnxSynthesizer:
    """Open an RVC ONNX model of either contract; every failure is one ModelFormatError sentence.

    ``pin_noise=True`` replaces the graph's random nodes by inputs (for exact comparisons in tests).
    """
    import onnx
    import onnxruntime as ort

    p = Path(path)
    name = p.name
    if not p.is_file():
        raise VoiceError(f"Model file {str(p)!r} does not exist; check the path.")
    try:
        proto = onnx.load(str(p))
    except Exception:
        raise ModelFormatError(f"{name} is not a readable ONNX model (damaged or another format); export it again.") from None
    initializers = {i.name for i in proto.graph.initializer}
    input_names = [i.name for i in proto.graph.input if i.name not in initializers]
    contract, f0 = detect_contract(input_names, name)
    meta = _read_metadata(proto)
    if pin_noise and "sr" not in meta:
        # probe the rate on the graph as it is; the pinned one needs noise of a length we don't know yet
        meta["sr"] = str(load_onnx_synthesizer(p, providers=providers).sample_rate)
    pinned: list[str] = []
    if pin_noise:
        proto, pinned = pin_random_nodes(proto)
    wanted = providers or choose_providers()
    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=wanted)
    except Exception as exc:
        raise ModelFormatError(
            f"{name} could not be opened by onnxruntime ({str(exc).splitlines()[0][:160]}); export it again."
        ) from None
    inputs = {i.name: i for i in session.get_inputs()}
    phone_in = inputs["phone" if contract == "rvc" else "feats"]
    float_type = np.float16 if phone_in.type == "tensor(float16)" else np.float32
    feature_dim = phone_in.shape[2] if isinstance(phone_in.shape[2], int) else int(meta.get("feature_dim", 0) or 0)
    if feature_dim not in VERSION_OF_DIM:
        raise ModelFormatError(f"{name} takes {feature_dim or 'unknown'}-d content features; RVC uses 256 or 768.")
    version = meta.get("version") if meta.get("version") in FEATURE_DIMS else VERSION_OF_DIM[feature_dim]
    used = list(session.get_providers())
    fallback = ""
    if CUDA_PROVIDER in wanted and CUDA_PROVIDER not in used:
        fallback = (f"{name}: onnxruntime could not start CUDA (the session uses {', '.join(used)}); "
                    "the voice runs on the CPU. Check the CUDA and cuDNN libraries onnxruntime-gpu needs.")
        log.warning(fallback)
    synth = OnnxSynthesizer(
        path=str(p),
        contract=contract,
        f0=f0,
        feature_dim=feature_dim,
        sample_rate=0,
        version=version,
        providers=used,
        metadata=meta,
        pinned_inputs=pinned,
        session=session,
        float_type=float_type,
        fallback_reason=fallback,
        use_io_binding=bool(used) and used[0] == CUDA_PROVIDER,
    )
    sr = meta.get("sr")
    if sr is not None:
        synth.sample_rate = sample_rate_from_name(sr) or 0
    if synth.sample_rate <= 0:
        synth.sample_rate = _probe_sample_rate(synth)
    return synth


def _np_dtype(tensor: Any) -> Any:
    import torch

    return {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}[tensor.dtype]


def _probe_sample_rate(synth: OnnxSynthesizer) -> int:
    """RVC's own export has no metadata: run 20 silent frames; samples per frame x 100 is the rate."""
    t = 20
    try:
        audio = synth.infer(
            np.zeros((1, t, synth.feature_dim), np.float32),
            None,
            np.ones((1, t), np.int64),
            np.zeros((1, t), np.float32),
            0,
            rng=np.random.default_rng(0),
        )
    except Exception as exc:
        raise ModelFormatError(
            f"{Path(synth.path).name} failed a test run ({str(exc).splitlines()[0][:160]}); export it again."
        ) from None
    per_frame = audio.shape[-1] / t
    sr = int(round(per_frame * 100))
    if per_frame != int(per_frame) or sr not in (32000, 40000, 48000):
        raise ModelFormatError(
            f"{Path(synth.path).name} makes {per_frame:g} samples per frame, which is no RVC sample rate."
        )
    return sr
