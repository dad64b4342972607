"""Reading RVC ``.pth`` inference models safely, and telling the user what any other file is.

An RVC inference model (what RVC writes to ``assets/weights/NAME.pth``) is a pickled dict::

    weight   {name: fp16 tensor}  the synthesizer's state dict, ``enc_q.*`` removed, weight norm kept
                                  as ``weight_g``/``weight_v`` pairs
    config   [18 entries]         SynthesizerTrn's constructor arguments, last one the sample rate
    f0       1 or 0               whether the model takes pitch (NSF decoder)
    version  "v1" | "v2"          256-d or 768-d content features; missing means v1
    sr       "32k" | "40k" | "48k" (RVC's releases; any "<n>k" or int that agrees with the config)
    info     free text            e.g. "300epoch"

Nothing here unpickles arbitrary objects: files go through :mod:`engine.weights` (a static scan of the
pickle, then ``torch.load(weights_only=True)``), so a file that would run code on load is refused
instead of run.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine import weights
from engine.errors import ModelFormatError
from engine.voices.rvc.versions import VERSION_OF_DIM, VERSIONS, feature_dim, sample_rate_from_name
from engine.voices.rvc.synthesizer import (
    SynthConfig,
    SynthesizerTrn,
    weight_norm_prefixes,
)

RVC_WEIGHTS_HINT = "the small inference model RVC writes to its assets/weights folder"
CHOOSE_RVC_MODEL = f"an RVC .pth model that stores only tensors ({RVC_WEIGHTS_HINT})"


@dataclass(frozen=True)
class RVCCheckpoint:
    """A verified RVC inference model: config plus weights with weight norm already folded."""

    path: str
    config: SynthConfig
    weights: dict[str, torch.Tensor]  # our module names, float tensors as stored (usually fp16)
    info: str

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def f0(self) -> bool:
        return self.config.f0

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def speakers(self) -> int:
        return self.config.spk_embed_dim

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim


# --- weight norm -------------------------------------------------------------------------------


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    return v.float().flatten(1).norm(dim=1).reshape((-1,) + (1,) * (v.dim() - 1))


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace ``X.weight_g``/``X.weight_v`` (and torch's ``X.parametrizations.weight.original0/1``)
    by ``X.weight = g * v / ||v||`` (norm over all but dim 0), as ``remove_weight_norm`` does."""
    out: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith(".weight_g") or key.endswith(".weight_v"):
            pairs.setdefault(key[: -len(".weight_g")], {})[key[-1]] = value
        elif key.endswith(".parametrizations.weight.original0") or key.endswith(
            ".parametrizations.weight.original1"
        ):
            base = key[: -len(".parametrizations.weight.original0")]
            pairs.setdefault(base, {})["g" if key.endswith("0") else "v"] = value
        else:
            out[key] = value
    for base, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            out[base + (".weight_g" if "g" in gv else ".weight_v")] = next(iter(gv.values()))
            continue
        g, v = gv["g"].float(), gv["v"].float()
        # kept in float32: rounding the folded weight back to fp16 would add error RVC does not have
        out[base + ".weight"] = v * (g / _norm_except_dim0(v))
    return out


def unfold_weight_norm(state: dict[str, torch.Tensor], prefixes: list[str]) -> dict[str, torch.Tensor]:
    """The inverse of ``fold_weight_norm`` for the given module prefixes (RVC's on-disk form)."""
    wn = set(prefixes)
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        base, _, leaf = key.rpartition(".")
        if leaf == "weight" and base in wn:
            out[base + ".weight_g"] = _norm_except_dim0(value).to(value.dtype)
            out[base + ".weight_v"] = value
        else:
            out[key] = value
    return out


# --- expected layout -----------------------------------------------------------------------------


def _meta_model(cfg: SynthConfig) -> SynthesizerTrn:
    with torch.device("meta"):
        return SynthesizerTrn(cfg)


def expected_shapes(cfg: SynthConfig) -> dict[str, tuple[int, ...]]:
    """Every key RVC saves for this config (``weight_g``/``weight_v`` form), with its shape."""
    model = _meta_model(cfg)
    state = unfold_weight_norm(model.state_dict(), weight_norm_prefixes(model))
    return {k: tuple(v.shape) for k, v in state.items()}


# --- reading -----------------------------------------------------------------------------------


def safe_torch_load(path: str | os.PathLike) -> Any:
    """An RVC model file through the one safe loader (:func:`engine.weights.safe_torch_load`):
    tensors and plain containers only; every refusal is one sentence naming the file and what to use."""
    return weights.safe_torch_load(path, what="RVC model", choose=CHOOSE_RVC_MODEL)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def classify(obj: Any, name: str) -> None:
    """Raise ModelFormatError naming what ``obj`` is when it is not an RVC inference model."""
    if not isinstance(obj, dict):
        raise ModelFormatError(
            f"{name} holds a {type(obj).__name__}, not an RVC model; choose {RVC_WEIGHTS_HINT}."
        )
    if "weight" in obj and "config" in obj:
        return
    if "model" in obj and isinstance(obj["model"], dict):
        keys = list(obj["model"].keys())
        if any(k.startswith(("emb_uv.", "f0_decoder.", "pre.", "enc_spk.")) for k in keys) or any(
            k.startswith("enc_p.f0_emb") for k in keys
        ):
            raise ModelFormatError(
                f"{name} looks like a so-vits-svc model, which AutoVoice does not run; "
                f"use an RVC v1/v2 model ({RVC_WEIGHTS_HINT})."
            )
        if any(k.startswith(("discriminators.", "module.discriminators.")) for k in keys):
            raise ModelFormatError(
                f"{name} is an RVC discriminator training checkpoint (D_*.pth), used only for training; "
                f"use {RVC_WEIGHTS_HINT}."
            )
        if any(k.startswith(("enc_p.", "dec.", "flow.", "module.enc_p.")) for k in keys):
            raise ModelFormatError(
                f"{name} is an RVC training checkpoint (G_*.pth); use {RVC_WEIGHTS_HINT}, or make one "
                f"from this file with RVC's checkpoint-processing tab (extract small model)."
            )
        raise ModelFormatError(f"{name} is a training checkpoint of an unknown model; choose an RVC .pth model.")
    if _is_tensor_dict(obj) and any(k.startswith(("enc_p.", "dec.")) for k in obj):
        raise ModelFormatError(
            f"{name} is a bare synthesizer state dict without RVC's config; use {RVC_WEIGHTS_HINT}."
        )
    if "state_dict" in obj or "net" in obj or _is_tensor_dict(obj):
        raise ModelFormatError(
            f"{name} holds weights of some other model (no RVC 'weight' and 'config' entries); "
            f"choose {RVC_WEIGHTS_HINT}."
        )
    keys = ", ".join(sorted(str(k) for k in obj)[:5])
    raise ModelFormatError(
        f"{name} is not an RVC model (it has the entries {keys}); choose {RVC_WEIGHTS_HINT}."
    )


def _parse_config(obj: dict, name: str) -> SynthConfig:
    weight = obj["weight"]
    if not _is_tensor_dict(weight):
        raise ModelFormatError(f"{name} has an RVC 'weight' entry that is not a set of tensors; the file is damaged.")
    config = list(obj["config"]) if isinstance(obj["config"], (list, tuple)) else None
    if config is None or len(config) != SynthConfig.N_ENTRIES:
        got = len(config) if config is not None else type(obj["config"]).__name__
        raise ModelFormatError(
            f"{name} has an RVC config of {got} entries where {SynthConfig.N_ENTRIES} are expected; "
            f"it was not written by RVC v1/v2."
        )
    version = obj.get("version", "v1") or "v1"
    if version not in VERSIONS:
        raise ModelFormatError(f"{name} declares RVC version {version!r}; AutoVoice runs v1 and v2 models.")
    f0 = obj.get("f0", 1)
    try:
        f0 = bool(int(f0))
    except (TypeError, ValueError):
        raise ModelFormatError(f"{name} has an f0 flag of {f0!r} where 0 or 1 is expected.") from None
    phone = weight.get("enc_p.emb_phone.weight")
    if phone is not None and phone.dim() == 2 and int(phone.shape[1]) in VERSION_OF_DIM:
        width = int(phone.shape[1])
        if width != feature_dim(version):
            raise ModelFormatError(
                f"{name} says it is an RVC {version} model but its weights take {width}-d features "
                f"(RVC {VERSION_OF_DIM[width]}); the file's metadata is wrong."
            )
    # RVC takes the speaker count from the embedding, not from the config.
    emb = weight.get("emb_g.weight")
    if emb is not None and emb.dim() == 2:
        config[15] = int(emb.shape[0])
    try:
        cfg = SynthConfig.from_list(config, version=version, f0=f0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{name} has an RVC config that cannot be read ({exc}); the file is damaged.") from None
    sr_field = obj.get("sr")
    if sr_field is not None:
        sr_val = sample_rate_from_name(sr_field)
        if sr_val is None:
            raise ModelFormatError(
                f"{name} has a sample rate of {sr_field!r}, which names no rate; expected a name like 40k (or Hz)."
            )
        if sr_val != cfg.sample_rate:
            raise ModelFormatError(
                f"{name} says {sr_field} but its config is for {cfg.sample_rate} Hz; the file's metadata is wrong."
            )
    if cfg.hop_samples * 100 != cfg.sample_rate:
        raise ModelFormatError(
            f"{name} upsamples by {cfg.hop_samples} per frame, which does not give {cfg.sample_rate} Hz at "
            f"100 frames/s; it is not an RVC v1/v2 model."
        )
    if cfg.inter_channels % 2 or cfg.hidden_channels % max(cfg.n_heads, 1) or cfg.n_heads < 1:
        raise ModelFormatError(f"{name} has an inconsistent RVC config (channel sizes); the file is damaged.")
    if cfg.upsample_initial_channel % 2 ** len(cfg.upsample_rates):
        raise ModelFormatError(f"{name} has an inconsistent RVC config (decoder channels); the file is damaged.")
    return cfg


def verify_weights(weight: dict[str, torch.Tensor], cfg: SynthConfig, name: str) -> None:
    """Check keys and shapes against what RVC saves for ``cfg``; one sentence on the first problem."""
    expected = expected_shapes(cfg)
    present = {k: v for k, v in weight.items() if not k.startswith("enc_q.")}
    # accept torch's newer parametrization names for the weight-norm pairs as well
    renamed = {}
    for k, v in present.items():
        if k.endswith(".parametrizations.weight.original0"):
            k = k[: -len(".parametrizations.weight.original0")] + ".weight_g"
        elif k.endswith(".parametrizations.weight.original1"):
            k = k[: -len(".parametrizations.weight.original1")] + ".weight_v"
        renamed[k] = v
    missing = [k for k in expected if k not in renamed]
    unexpected = [k for k in renamed if k not in expected]
    kind = f"RVC {cfg.version} {'with' if cfg.f0 else 'without'} pitch"
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ModelFormatError(
            f"{name} does not match the {kind} architecture its config declares: "
            f"{' and '.join(parts)} weights; the file is damaged or from another program."
        )
    for k, shape in expected.items():
        got = tuple(renamed[k].shape)
        if got != shape:
            raise ModelFormatError(
                f"{name} does not match its declared {kind} config: {k} has shape {list(got)} "
                f"where {list(shape)} is expected; the file is damaged or from another program."
            )
        if not renamed[k].is_floating_point():
            raise ModelFormatError(f"{name} stores {k} as {renamed[k].dtype}, not floats; the file is damaged.")


def read_checkpoint(path: str | os.PathLike) -> RVCCheckpoint:
    """Load, classify and verify an RVC inference ``.pth``. Raises ModelFormatError in one sentence."""
    name = Path(path).name
    obj = safe_torch_load(path)
    classify(obj, name)
    cfg = _parse_config(obj, name)
    verify_weights(obj["weight"], cfg, name)
    weights = fold_weight_norm({k: v for k, v in obj["weight"].items() if not k.startswith("enc_q.")})
    for k, v in weights.items():
        if not torch.isfinite(v.float()).all():
            raise ModelFormatError(f"{name} has non-finite values in {k}; the model is broken (re-export it).")
    return RVCCheckpoint(path=str(path), config=cfg, weights=weights, info=str(obj.get("info", "")))


def build_from_checkpoint(
    ckpt: RVCCheckpoint, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> SynthesizerTrn:
    """Instantiate the synthesizer for ``ckpt`` (no random init), in eval() mode on ``device``."""
    model = _meta_model(ckpt.config)
    state = {k: v.to(dtype) for k, v in ckpt.weights.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()


def load_synthesizer(
    path: str | os.PathLike, device: str | torch.device | None = None, half: bool | None = None
) -> tuple[SynthesizerTrn, RVCCheckpoint]:
    """Read ``path`` and build its synthesizer on ``device`` (default: ``engine.accelerators.torch_device()``),
    fp16 only on CUDA unless ``half`` says otherwise."""
    from engine import accelerators as devices

    dev = torch.device(device) if device is not None else devices.torch_device()
    use_half = devices.use_fp16(dev) if half is None else (half and dev.type == "cuda")
    ckpt = read_checkpoint(path)
    model = build_from_checkpoint(ckpt, dev, torch.float16 if use_half else torch.float32)
    return model, ckpt


def write_checkpoint(
    model: SynthesizerTrn, path: str | os.PathLike, *, info: str = "", sr_as_name: bool = True
) -> None:
    """Save ``model`` exactly as RVC's ``savee`` does (fp16, weight_g/weight_v pairs, 18-entry config)."""
    cfg = model.cfg
    state = unfold_weight_norm(
        {k: v.detach().cpu() for k, v in model.state_dict().items()}, weight_norm_prefixes(model)
    )
    sr_name = f"{cfg.sample_rate // 1000}k" if cfg.sample_rate % 1000 == 0 else cfg.sample_rate
    opt: dict[str, Any] = OrderedDict()
    opt["weight"] = {k: v.half() for k, v in state.items()}
    opt["config"] = cfg.to_list()
    opt["info"] = info
    opt["sr"] = sr_name if sr_as_name else cfg.sample_rate
    opt["f0"] = int(cfg.f0)
    opt["version"] = cfg.version
    torch.save(opt, str(path))
