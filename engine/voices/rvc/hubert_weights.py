"""Reading HuBERT/ContentVec checkpoints into :class:`engine.voices.rvc.hubert.HubertModel`.

Two layouts are understood: fairseq's (``hubert_base.pt``: a dict with ``model``, ``args``/``cfg``)
and Hugging Face transformers' (``pytorch_model.bin`` / ``model.safetensors`` with ``config.json``),
whose names are mapped to fairseq's. The architecture comes from the state dict's shapes, completed
by the checkpoint's configuration where shapes cannot tell (heads, norm placement, strides).
Every file is read through :mod:`engine.weights`; nothing pickled is ever run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import torch

from engine.errors import ModelFormatError
from engine.voices.rvc.hubert import HubertConfig, HubertModel
from engine.weights import load_weights, plain

CHOOSE_ENCODER = "RVC's hubert_base.pt"


# Parameters in fairseq checkpoints that inference does not use.
_UNUSED_KEYS_PREFIXES = ("label_embs_concat", "mask_emb", "target_glu", "encoder.layer_norm_first")


def _count_indexed(keys: Iterable[str], prefix: str) -> int:
    idx = set()
    for k in keys:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                idx.add(int(head))
    return max(idx) + 1 if idx else 0


def _parse_conv_layers(spec: Any) -> tuple[tuple[int, int, int], ...] | None:
    if isinstance(spec, str):
        # fairseq stores e.g. "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"; evaluate it as
        # data only: list literals, tuples of ints, + and * between them.
        import ast

        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, ast.List | ast.Tuple):
                return [ev(e) for e in node.elts]
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
                a, b = ev(node.left), ev(node.right)
                return a + b if isinstance(node.op, ast.Add) else a * b
            raise ValueError("unsupported expression")

        try:
            spec = ev(ast.parse(spec, mode="eval"))
        except (SyntaxError, ValueError, TypeError):
            return None
    if isinstance(spec, list) and all(isinstance(t, list | tuple) and len(t) == 3 for t in spec):
        return tuple((int(a), int(b), int(c)) for a, b, c in spec)
    return None


def _normalise_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept re-saved checkpoints whose weight norm uses torch's parametrization names."""
    out = {}
    for k, v in sd.items():
        k = k.replace("encoder.pos_conv.0.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
        k = k.replace("encoder.pos_conv.0.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
        out[k] = v
    return out


def config_from_checkpoint(sd: dict[str, torch.Tensor], model_cfg: dict[str, Any] | None = None) -> HubertConfig:
    """Architecture from a state dict's shapes, completed by the checkpoint's config where shapes
    cannot tell (heads, norm placement, strides)."""
    model_cfg = model_cfg or {}
    keys = list(sd)
    n_conv = _count_indexed(keys, "feature_extractor.conv_layers.")
    n_layers = _count_indexed(keys, "encoder.layers.")
    if n_conv == 0 or n_layers == 0 or "encoder.pos_conv.0.weight_v" not in sd:
        raise ValueError("not a fairseq HuBERT state dict")
    conv_from_cfg = _parse_conv_layers(model_cfg.get("conv_feature_layers"))
    shapes = [tuple(sd[f"feature_extractor.conv_layers.{i}.0.weight"].shape) for i in range(n_conv)]
    if conv_from_cfg is not None and len(conv_from_cfg) == n_conv:
        conv_layers = conv_from_cfg
    else:
        # HuBERT/wav2vec 2.0 convention: kernel 10 stride 5, other kernels stride 2.
        conv_layers = tuple((s[0], s[2], 5 if s[2] == 10 else 2) for s in shapes)
    for (dim, k, _), s in zip(conv_layers, shapes):
        if s[0] != dim or s[2] != k:
            raise ValueError("conv layer shapes disagree with the checkpoint's configuration")
    embed_dim = sd["encoder.layers.0.fc1.weight"].shape[1]
    v = sd["encoder.pos_conv.0.weight_v"]
    mode = "layer_norm" if "feature_extractor.conv_layers.0.2.1.weight" in sd else "default"
    heads = model_cfg.get("encoder_attention_heads")
    if not isinstance(heads, int) or heads <= 0:
        heads = 12 if embed_dim == 768 else max(1, embed_dim // 64)
    lnf = model_cfg.get("layer_norm_first")
    final = sd.get("final_proj.weight")
    return HubertConfig(
        conv_layers=conv_layers,
        conv_bias="feature_extractor.conv_layers.0.0.bias" in sd,
        extractor_mode=mode,
        embed_dim=embed_dim,
        ffn_dim=sd["encoder.layers.0.fc1.weight"].shape[0],
        num_layers=n_layers,
        num_heads=heads,
        pos_conv_kernel=v.shape[2],
        pos_conv_groups=embed_dim // v.shape[1],
        layer_norm_first=bool(lnf) if isinstance(lnf, bool) else mode == "layer_norm",
        final_dim=0 if final is None else final.shape[0],
    )


def _checkpoint_model_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    args = plain(ckpt.get("args"))
    if isinstance(args, dict):
        merged.update(args)
    cfg = plain(ckpt.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        merged.update({k: v for k, v in cfg["model"].items() if v is not None})
    return merged


def load_hubert_checkpoint(path: str | os.PathLike) -> HubertModel:
    """Load a fairseq HuBERT/ContentVec checkpoint (``hubert_base.pt``) into :class:`HubertModel`, in eval()."""
    path = Path(path)
    ckpt = load_weights(path, what="content encoder", choose=CHOOSE_ENCODER)
    if not isinstance(ckpt, dict):
        raise ModelFormatError(f"{path.name} is not a fairseq HuBERT/ContentVec checkpoint; use {CHOOSE_ENCODER}.")
    sd = ckpt.get("model", ckpt)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelFormatError(f"{path.name} holds no model weights where a fairseq checkpoint keeps them; use {CHOOSE_ENCODER}.")
    model_cfg = _hf_config_near(path) if _is_hf_layout(sd) else _checkpoint_model_config(ckpt)
    return _model_from_state_dict(path, _normalise_state_dict(sd), model_cfg)


def _model_from_state_dict(path: Path, sd: dict[str, torch.Tensor], model_cfg: dict[str, Any]) -> HubertModel:
    if _is_hf_layout(sd):
        sd = hf_to_fairseq_state_dict(sd)
        if any(k.startswith("feature_extractor.conv_layers.") and ".layer_norm." in k for k in sd):
            raise ModelFormatError(f"{path.name} is a HuBERT-large-style model (layer-norm feature extractor), not the HuBERT-base/ContentVec RVC uses; use {CHOOSE_ENCODER}.")
    try:
        cfg = config_from_checkpoint(sd, model_cfg)
    except (ValueError, KeyError, IndexError) as exc:
        raise ModelFormatError(f"{path.name} is not a fairseq HuBERT/ContentVec checkpoint ({exc}); use {CHOOSE_ENCODER}.") from None
    model = HubertModel(cfg)
    wanted = {k: v for k, v in sd.items() if not k.startswith(_UNUSED_KEYS_PREFIXES)}
    try:
        missing, unexpected = model.load_state_dict(wanted, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()[:160]
        raise ModelFormatError(f"{path.name} does not match the HuBERT layout ({first}); use {CHOOSE_ENCODER}.") from None
    if missing or unexpected:
        bad = (missing or unexpected)[:3]
        raise ModelFormatError(
            f"{path.name} does not match the HuBERT layout ({'missing' if missing else 'unexpected'} weights {', '.join(bad)}); use {CHOOSE_ENCODER}."
        )
    return model.eval()


# Hugging Face transformers layout (HubertModel / ContentVec ports with a top-level final_proj).
_HF_RENAMES = (
    ("feature_projection.layer_norm.", "layer_norm."),
    ("feature_projection.projection.", "post_extract_proj."),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
    ("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
    ("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."),
    (".attention.", ".self_attn."),
    (".feed_forward.intermediate_dense.", ".fc1."),
    (".feed_forward.output_dense.", ".fc2."),
)


def _is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("hubert.", "feature_projection.", "encoder.pos_conv_embed.")) or ".attention.q_proj." in k for k in sd)


def hf_to_fairseq_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers HubertModel state dict to fairseq's names (values untouched)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("hubert."):
            k = k[len("hubert."):]
        if k == "masked_spec_embed":
            continue
        for a, b in _HF_RENAMES:
            k = k.replace(a, b)
        if k.startswith("feature_extractor.conv_layers."):
            # conv_layers.i.conv.weight -> conv_layers.i.0.weight; group norm conv_layers.0.layer_norm -> .2
            k = k.replace(".conv.weight", ".0.weight").replace(".conv.bias", ".0.bias")
            if k.startswith("feature_extractor.conv_layers.0.layer_norm."):
                k = k.replace(".layer_norm.", ".2.")
        if k.startswith("encoder.layers.") and ".layer_norm." in k:
            k = k.replace(".layer_norm.", ".self_attn_layer_norm.")
        out[k] = v
    return out


def _hf_config_near(path: Path) -> dict[str, Any]:
    import json

    cfg_path = path.parent / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if isinstance(cfg.get("num_attention_heads"), int):
        out["encoder_attention_heads"] = cfg["num_attention_heads"]
    if isinstance(cfg.get("do_stable_layer_norm"), bool):
        out["layer_norm_first"] = cfg["do_stable_layer_norm"]
    dims, kernels, strides = cfg.get("conv_dim"), cfg.get("conv_kernel"), cfg.get("conv_stride")
    if all(isinstance(v, list) for v in (dims, kernels, strides)) and len(dims) == len(kernels) == len(strides):
        out["conv_feature_layers"] = [list(t) for t in zip(dims, kernels, strides)]
    return out


def load_hf_hubert(path: str | os.PathLike) -> HubertModel:
    """A transformers-layout HuBERT/ContentVec (``pytorch_model.bin`` or ``model.safetensors``, with
    its ``config.json`` beside it if present) into :class:`HubertModel`."""
    path = Path(path)
    sd = load_weights(path, what="content encoder", choose=CHOOSE_ENCODER)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not _is_hf_layout(sd):
        raise ModelFormatError(f"{path.name} is not a HuBERT/ContentVec model; use {CHOOSE_ENCODER}.")
    return _model_from_state_dict(path, _normalise_state_dict(sd), _hf_config_near(path))

