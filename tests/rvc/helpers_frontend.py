"""Builders of tiny RVC front-end files in the real formats: a fairseq-style HuBERT checkpoint
(pickled dict with ``args`` = a real argparse.Namespace, ``cfg`` = omegaconf-shaped objects,
``model`` = state dict), an RMVPE state dict, and a faiss IVF-Flat index."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

import numpy as np
import torch

from engine.voices.rvc.hubert import HubertConfig, HubertModel

TINY_CONV = ((8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2))


def tiny_hubert_config(**changes) -> HubertConfig:
    base = dict(
        conv_layers=TINY_CONV,
        embed_dim=16,
        ffn_dim=32,
        num_layers=12,
        num_heads=2,
        pos_conv_kernel=16,
        pos_conv_groups=4,
        final_dim=8,
    )
    base.update(changes)
    return HubertConfig(**base)


class _FakeOmegaconf:
    """Context manager registering classes named like omegaconf's, so that a pickle refers to
    ``omegaconf.dictconfig.DictConfig`` / ``omegaconf.nodes.AnyNode`` as real fairseq checkpoints
    do. Nothing in the engine imports omegaconf; this only shapes the test file."""

    def __enter__(self):
        self.saved = {k: sys.modules.get(k) for k in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes")}
        root = types.ModuleType("omegaconf")
        dc = types.ModuleType("omegaconf.dictconfig")
        nodes = types.ModuleType("omegaconf.nodes")

        class DictConfig:
            pass

        class AnyNode:
            pass

        DictConfig.__module__, DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
        AnyNode.__module__, AnyNode.__qualname__ = "omegaconf.nodes", "AnyNode"
        dc.DictConfig, nodes.AnyNode = DictConfig, AnyNode
        root.dictconfig, root.nodes = dc, nodes
        sys.modules.update({"omegaconf": root, "omegaconf.dictconfig": dc, "omegaconf.nodes": nodes})
        self.DictConfig, self.AnyNode = DictConfig, AnyNode
        return self

    def make(self, value):
        """omegaconf's pickled layout: containers keep '_content', leaves keep '_val'."""
        if isinstance(value, dict):
            obj = self.DictConfig()
            obj.__dict__.update(
                {"_metadata": self.metadata(dict), "_parent": None, "_flags_cache": None, "_content": {k: self.make(v) for k, v in value.items()}}
            )
            return obj
        node = self.AnyNode()
        node.__dict__.update({"_metadata": self.metadata(type(value)), "_parent": None, "_val": value})
        return node

    @staticmethod
    def metadata(object_type):
        # omegaconf's Metadata names types: typing.Any and builtins such as dict / int (pickled as
        # __builtin__.* under protocol 2, as torch.save writes).
        return {"ref_type": typing.Any, "object_type": object_type, "optional": True, "key": None}

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def tiny_fairseq_hubert_checkpoint(path: Path, cfg: HubertConfig | None = None, seed: int = 0, legacy_format: bool = False,
                                  with_args: bool = True) -> HubertModel:
    """Write a fairseq-layout HuBERT checkpoint with tiny dims; return the model it holds."""
    cfg = cfg or tiny_hubert_config()
    torch.manual_seed(seed)
    model = HubertModel(cfg).eval()
    with torch.no_grad():  # weight_g of a trained model is not all ones
        model.encoder.pos_conv[0].weight_g.uniform_(0.5, 1.5)
    sd = model.state_dict()
    sd["mask_emb"] = torch.rand(cfg.embed_dim)
    sd["label_embs_concat"] = torch.rand(504, max(cfg.final_dim, 1))
    conv_spec = " + ".join(f"[({d},{k},{s})]" for d, k, s in cfg.conv_layers)  # fairseq's form, this config's layers
    args = argparse.Namespace(
        arch="hubert",
        encoder_layers=cfg.num_layers,
        encoder_embed_dim=cfg.embed_dim,
        encoder_ffn_embed_dim=cfg.ffn_dim,
        encoder_attention_heads=cfg.num_heads,
        conv_feature_layers=conv_spec,
        layer_norm_first=False,
        extractor_mode="default",
        final_dim=cfg.final_dim,
        label_rate=50,
    )
    with _FakeOmegaconf() as oc:
        ckpt = {
            "args": args if with_args else None,  # newer fairseq keeps the configuration only in cfg
            "cfg": oc.make(
                {
                    "_name": None,
                    "model": {
                        "_name": "hubert",
                        "encoder_attention_heads": cfg.num_heads,
                        "conv_feature_layers": conv_spec,
                        "layer_norm_first": False,
                    },
                    "task": {"_name": "hubert_pretraining", "sample_rate": 16000, "normalize": False},
                }
            ),
            "model": sd,
            "optimizer_history": [{"criterion_name": "HubertCriterion", "num_updates": 400000}],
            "extra_state": {"epoch": 3, "best": np.float64(4.2)},
        }
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy_format)
    return model


class MakesAFile:
    """A pickle whose __reduce__ would create ``target`` when unpickled."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


class RunsAShellCommand:
    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


class EnumByName:
    """Pickles as Python 3.12+ pickles an enum member: ``getattr(EnumClass, name)``."""

    def __init__(self, cls, name: str):
        self.cls, self.name = cls, name

    def __reduce__(self):
        return (getattr, (self.cls, self.name))


def checkpoint_with_enum_by_name(path: Path, cfg: HubertConfig | None = None) -> None:
    """A checkpoint whose Namespace holds a fairseq ChoiceEnum member pickled by name."""
    import enum

    cfg = cfg or tiny_hubert_config()
    saved = sys.modules.get("fairseq")
    fake = types.ModuleType("fairseq")

    class ChoiceEnum(enum.Enum):
        default = "default"
        layer_norm = "layer_norm"

    ChoiceEnum.__module__, ChoiceEnum.__qualname__ = "fairseq", "ChoiceEnum"
    fake.ChoiceEnum = ChoiceEnum
    sys.modules["fairseq"] = fake
    try:
        args = argparse.Namespace(extractor_mode=EnumByName(ChoiceEnum, "default"), encoder_attention_heads=cfg.num_heads)
        torch.save({"args": args, "model": HubertModel(cfg).state_dict()}, path)
    finally:
        if saved is None:
            sys.modules.pop("fairseq", None)
        else:
            sys.modules["fairseq"] = saved


def malicious_checkpoint(path: Path, payload) -> None:
    """A fairseq-looking checkpoint with a code-running object hidden in its config."""
    sd = HubertModel(tiny_hubert_config()).state_dict()
    torch.save({"args": argparse.Namespace(trap=payload), "model": sd}, path)


# ------------------------------------------------------------------------------ RMVPE

TINY_RMVPE = dict(n_blocks=1, n_gru=1, kernel_size=(2, 2), en_de_layers=2, inter_layers=1, en_out_channels=2, gru_hidden=4)


def tiny_rmvpe_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    from engine.voices.rvc.f0 import E2E

    torch.manual_seed(seed)
    model = E2E(**TINY_RMVPE)
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


# ------------------------------------------------------------------------------ faiss

def build_ivf_flat_index(vectors: np.ndarray, nlist: int = 4, add: bool = True):
    """RVC's ``added_IVF*_Flat_nprobe_1_*.index``: IVF-Flat (L2) trained on the vectors, then added."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.index_factory(vectors.shape[1], f"IVF{nlist},Flat")
    index.train(vectors)
    if add:
        index.add(vectors)
    return index
