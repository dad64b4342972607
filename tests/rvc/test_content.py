"""Content encoder: fairseq checkpoints load safely into our HuBERT, with RVC's v1/v2 outputs."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.weights import checkpoint_globals
from engine.voices.rvc.content import (
    HubertConfig,
    HubertModel,
    OnnxContentEncoder,
    TorchContentEncoder,
    content_frames,
    features_to_f0_rate,
    find_content_encoder,
    load_content_encoder,
)
from tests.rvc.helpers_frontend import (
    EnumByName,
    MakesAFile,
    checkpoint_with_enum_by_name,
    RunsAShellCommand,
    malicious_checkpoint,
    tiny_fairseq_hubert_checkpoint,
    tiny_hubert_config,
)


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    """A 150 Hz harmonic tone with noise: any real-valued 16 kHz signal serves the shape tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = sum(0.2 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 20)) + 0.01 * rng.standard_normal(n)
    return torch.from_numpy(x.astype(np.float32))


def _one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and len(msg) < 400


@pytest.mark.parametrize("legacy_format", [False, True], ids=["zip", "legacy"])
def test_tiny_fairseq_checkpoint_loads_and_gives_rvc_shapes(tmp_path, legacy_format):
    path = tmp_path / "hubert_base.pt"
    saved = tiny_fairseq_hubert_checkpoint(path, legacy_format=legacy_format)
    # The file really is fairseq-shaped: a Namespace and omegaconf objects in the pickle.
    names = checkpoint_globals(path)
    assert {"argparse.Namespace", "omegaconf.dictconfig.DictConfig", "omegaconf.nodes.AnyNode"} <= names

    enc = load_content_encoder(path)
    assert isinstance(enc, TorchContentEncoder)
    assert enc.versions == ("v1", "v2")
    assert enc.model.cfg.num_heads == 2  # read from the checkpoint's config, not guessed from shapes
    for n in (400, 16000, 44800, 16000 + 319):
        x = _speechlike(n)
        v1, v2 = enc.encode(x, "v1"), enc.encode(x, "v2")
        assert v1.shape == (1, content_frames(n), 8)
        assert v2.shape == (1, content_frames(n), 16)
        assert content_frames(n) == (n - 400) // 320 + 1
        # Same numbers as the model that was saved: weights, heads and norm placement all survived.
        torch.testing.assert_close(v2, saved(x[None], output_layer=12), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v1, saved(x[None], output_layer=9, project=True), rtol=1e-5, atol=1e-5)
    # Layer 9 and layer 12 are different layers.
    x = _speechlike(16000)
    assert not torch.allclose(enc.model(x[None], output_layer=9), enc.model(x[None], output_layer=12))


def test_rvc_frame_alignment_with_pitch_frames():
    # RVC realtime: N samples -> HuBERT frames + the last repeated, x2 -> N // 160 pitch-rate frames.
    for n in (16000, 44800, 3200):
        t = content_frames(n)
        feats = torch.arange(t, dtype=torch.float32).view(1, t, 1).expand(1, t, 3)
        up = features_to_f0_rate(feats, n // 160)
        assert up.shape == (1, n // 160, 3)
        assert t + 1 == n // 320  # so frames after repeating the last = len / 320
        expected = np.repeat(np.append(np.arange(t), t - 1), 2)[: n // 160]
        np.testing.assert_array_equal(up[0, :, 0].numpy(), expected)
    # Asking for more frames than there are pads with the last frame.
    up = features_to_f0_rate(torch.ones(1, 2, 1) * torch.tensor([1.0, 2.0]).view(1, 2, 1), 9)
    assert up[0, :, 0].tolist() == [1, 1, 2, 2, 2, 2, 2, 2, 2]


def test_checkpoint_with_only_omegaconf_cfg_loads(tmp_path):
    path = tmp_path / "contentvec.pt"
    saved = tiny_fairseq_hubert_checkpoint(path, cfg=tiny_hubert_config(num_heads=4), with_args=False)
    assert "argparse.Namespace" not in checkpoint_globals(path)
    enc = load_content_encoder(path)
    assert enc.model.cfg.num_heads == 4
    x = _speechlike(8000)
    torch.testing.assert_close(enc.encode(x, "v2"), saved(x[None], output_layer=12), rtol=1e-5, atol=1e-5)


def test_post_norm_layer_matches_torch_transformer_layer():
    """fairseq's post-norm layer is x = LN(x + SA(x)); x = LN(x + FFN(x)): the same as torch's
    TransformerEncoderLayer(norm_first=False, activation=gelu), an independent implementation."""
    torch.manual_seed(1)
    model = HubertModel(tiny_hubert_config(num_layers=1)).eval()
    ours = model.encoder.layers[0]
    ref = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True).eval()
    with torch.no_grad():
        a = ours.self_attn
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        ref.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(a.out_proj.bias)
        for (ln_ours, ln_ref) in ((ours.self_attn_layer_norm, ref.norm1), (ours.final_layer_norm, ref.norm2)):
            ln_ours.weight.uniform_(0.5, 1.5)
            ln_ref.weight.copy_(ln_ours.weight)
            ln_ref.bias.copy_(ln_ours.bias)
        ref.linear1.weight.copy_(ours.fc1.weight)
        ref.linear1.bias.copy_(ours.fc1.bias)
        ref.linear2.weight.copy_(ours.fc2.weight)
        ref.linear2.bias.copy_(ours.fc2.bias)
        x = torch.randn(2, 37, 16)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_positional_conv_weight_norm_matches_torch():
    torch.manual_seed(2)
    model = HubertModel(tiny_hubert_config())
    pc = model.encoder.pos_conv[0]
    with torch.no_grad():
        pc.weight_g.uniform_(0.5, 2.0)
    conv = torch.nn.Conv1d(16, 16, 16, padding=8, groups=4)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(pc.weight_g)
        conv.parametrizations.weight.original1.copy_(pc.weight_v)
        conv.bias.copy_(pc.bias)
        x = torch.randn(1, 16, 50)
        ref = torch.nn.functional.gelu(conv(x)[:, :, :-1])  # fairseq SamePad drops one step for even kernels
        torch.testing.assert_close(pc(x), ref, rtol=1e-5, atol=1e-5)


def test_full_size_model_has_hubert_base_layout():
    model = HubertModel(HubertConfig())
    sd = model.state_dict()
    assert sd["feature_extractor.conv_layers.0.0.weight"].shape == (512, 1, 10)
    assert sd["feature_extractor.conv_layers.0.2.weight"].shape == (512,)  # group norm
    assert sd["encoder.pos_conv.0.weight_g"].shape == (1, 1, 128)
    assert sd["encoder.pos_conv.0.weight_v"].shape == (768, 48, 128)
    assert sd["encoder.layers.11.fc1.weight"].shape == (3072, 768)
    assert sd["final_proj.weight"].shape == (256, 768)
    assert model.cfg.hop_samples == 320
    # Parameter count of HuBERT-base as published (transformers' HubertModel for
    # facebook/hubert-base-ls960: 94,371,712, which has no final_proj but a 768-d mask embedding).
    n = sum(p.numel() for p in model.parameters()) - sd["final_proj.weight"].numel() - 256 + 768
    assert n == 94_371_712


@pytest.mark.parametrize("payload", [MakesAFile, RunsAShellCommand], ids=["open", "os.system"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, payload):
    target = tmp_path / "created_by_pickle"
    path = tmp_path / "hubert_base.pt"
    malicious_checkpoint(path, payload(target))
    with pytest.raises(ModelFormatError) as info:
        load_content_encoder(path)
    assert not target.exists()
    msg = str(info.value)
    assert _one_sentence(msg) and "hubert_base.pt" in msg and "could run code" in msg
    # Control: an unrestricted load of the same file does create it, so the check above means something.
    torch.load(path, weights_only=False)
    assert target.exists()


def test_unknown_files_get_one_sentence(tmp_path):
    # A torch file with the wrong contents.
    odd = tmp_path / "odd.pt"
    torch.save({"weights": {"a": torch.zeros(3)}}, odd)
    with pytest.raises(ModelFormatError) as info:
        load_content_encoder(odd)
    assert _one_sentence(str(info.value)) and "odd.pt" in str(info.value)
    # Not a model at all.
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02}q\x00" + b"garbage" * 20)
    with pytest.raises(ModelFormatError) as info:
        load_content_encoder(junk)
    assert _one_sentence(str(info.value))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFormatError) as info:
        load_content_encoder(text)
    assert _one_sentence(str(info.value))
    # A transformers-layout file with missing pieces.
    hf = tmp_path / "pytorch_model.bin"
    torch.save({"feature_projection.projection.weight": torch.zeros(768, 512), "encoder.layers.0.attention.q_proj.weight": torch.zeros(768, 768)}, hf)
    with pytest.raises(ModelFormatError) as info:
        load_content_encoder(hf)
    assert "pytorch_model.bin" in str(info.value) and _one_sentence(str(info.value))


def _to_hf_names(sd: dict) -> dict:
    """fairseq names -> transformers HubertModel names (the inverse of what the loader does)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("feature_extractor.conv_layers."):
            k = k.replace(".0.weight", ".conv.weight").replace("conv_layers.0.2.", "conv_layers.0.layer_norm.")
        k = k.replace("post_extract_proj.", "feature_projection.projection.")
        if k.startswith("layer_norm."):
            k = "feature_projection." + k
        k = k.replace("encoder.pos_conv.0.", "encoder.pos_conv_embed.conv.")
        k = k.replace(".self_attn_layer_norm.", ".layer_norm.").replace(".self_attn.", ".attention.")
        k = k.replace(".fc1.", ".feed_forward.intermediate_dense.").replace(".fc2.", ".feed_forward.output_dense.")
        out[k] = v
    return out


def _write_safetensors(path, tensors: dict) -> None:
    import json
    import struct

    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_transformers_layout_contentvec_loads(tmp_path, fmt):
    import json

    torch.manual_seed(4)
    cfg = tiny_hubert_config(num_heads=4)
    model = HubertModel(cfg).eval()
    sd = _to_hf_names(model.state_dict())
    assert "encoder.layers.0.attention.q_proj.weight" in sd and "feature_projection.layer_norm.weight" in sd
    sd["masked_spec_embed"] = torch.zeros(16)
    path = tmp_path / ("pytorch_model.bin" if fmt == "bin" else "model.safetensors")
    if fmt == "bin":
        torch.save(sd, path)
    else:
        _write_safetensors(path, sd)
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 4, "conv_dim": [8] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2]}))
    enc = load_content_encoder(path)
    assert enc.model.cfg.num_heads == 4
    x = _speechlike(8000)
    torch.testing.assert_close(enc.encode(x, "v2"), model(x[None], output_layer=12), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc.encode(x, "v1"), model(x[None], output_layer=9, project=True), rtol=1e-5, atol=1e-5)


def test_missing_encoder_names_file_source_and_folder(tmp_path):
    with pytest.raises(VoiceError) as info:
        find_content_encoder(tmp_path / "models")
    msg = str(info.value)
    assert "hubert_base.pt" in msg and "lj1995/VoiceConversionWebUI" in msg and str(tmp_path / "models") in msg
    assert _one_sentence(msg)
    with pytest.raises(VoiceError) as info:
        load_content_encoder(tmp_path / "models" / "hubert_base.pt")
    assert "lj1995/VoiceConversionWebUI" in str(info.value)
    # Found when present; an ONNX file of the wrong size for the version is skipped.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vec-256-layer-9.onnx").write_bytes(b"x")
    assert find_content_encoder(tmp_path / "models", "v1").name == "vec-256-layer-9.onnx"
    with pytest.raises(VoiceError):
        find_content_encoder(tmp_path / "models", "v2")


class _ConvEncoder(torch.nn.Module):
    """An ONNX-exportable stand-in with HuBERT's framing: (1, 1, N) -> (1, C, T)."""

    def __init__(self, dim: int, channels_first: bool, rank3_input: bool):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, dim, 400, stride=320)
        self.channels_first = channels_first
        self.rank3_input = rank3_input

    def forward(self, source):
        x = source if self.rank3_input else source.unsqueeze(1)
        y = self.conv(x)
        return y if self.channels_first else y.transpose(1, 2)


@pytest.mark.parametrize(
    "dim,channels_first,rank3,version",
    [(256, True, True, "v1"), (768, False, False, "v2")],
    ids=["rvc-vec-256-layer-9-layout", "(1,N)->(1,T,768)"],
)
def test_onnx_content_encoder_layouts(tmp_path, dim, channels_first, rank3, version):
    torch.manual_seed(3)
    module = _ConvEncoder(dim, channels_first, rank3).eval()
    path = tmp_path / "vec.onnx"
    example = torch.zeros((1, 1, 16000) if rank3 else (1, 16000))
    axes = {0: "batch", 2 if rank3 else 1: "samples"}
    torch.onnx.export(module, (example,), str(path), input_names=["source"], output_names=["feats"],
                      dynamic_axes={"source": axes}, dynamo=False)
    enc = load_content_encoder(path)
    assert isinstance(enc, OnnxContentEncoder) and enc.versions == (version,)
    x = _speechlike(24000)
    out = enc.encode(x, version)
    assert out.shape == (1, content_frames(24000), dim)
    with torch.no_grad():
        ref = module(x.view((1, 1, -1) if rank3 else (1, -1)))
    ref = ref.transpose(1, 2) if channels_first else ref
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    other = "v2" if version == "v1" else "v1"
    with pytest.raises(VoiceError) as info:
        enc.encode(x, other)
    assert "vec.onnx" in str(info.value) and _one_sentence(str(info.value))


def test_plain_argparse_namespace_is_read_not_executed(tmp_path):
    """A Namespace carrying only data loads; its values reach the model config."""
    path = tmp_path / "h.pt"
    cfg = tiny_hubert_config(num_heads=8)
    torch.save({"args": argparse.Namespace(encoder_attention_heads=8), "model": HubertModel(cfg).state_dict()}, path)
    assert load_content_encoder(path).model.cfg.num_heads == 8


def test_matches_transformers_hubert_when_available():
    """Cross-check against transformers' HubertModel, an independent implementation of the same
    fairseq architecture (not a dependency: skipped where transformers is not installed; verified
    at full HuBERT-base size by hand, max difference 3e-6 at layers 9 and 12)."""
    transformers = pytest.importorskip("transformers")
    from engine.voices.rvc.content import config_from_checkpoint, hf_to_fairseq_state_dict

    torch.manual_seed(5)
    hf_cfg = transformers.HubertConfig(
        hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64,
        conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )
    hf = transformers.HubertModel(hf_cfg).eval()
    sd = hf_to_fairseq_state_dict(hf.state_dict())
    sd = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v for k, v in sd.items()}
    ours = HubertModel(config_from_checkpoint(sd, {"encoder_attention_heads": 4})).eval()
    ours.load_state_dict(sd)
    x = _speechlike(16000)[None]
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        for layer in (9, 12):
            torch.testing.assert_close(ours.extract_features(x, output_layer=layer), ref[layer], rtol=1e-4, atol=1e-4)


def test_reduced_precision_encoder_keeps_group_norm_in_float32(tmp_path):
    """RVC runs HuBERT in half precision on GPUs; fairseq normalises the first conv block in float32.
    bfloat16 on the CPU exercises the same path here."""
    path = tmp_path / "hubert_base.pt"
    tiny_fairseq_hubert_checkpoint(path)
    x = _speechlike(16000)
    ref = load_content_encoder(path).encode(x, "v2")
    low = load_content_encoder(path, dtype=torch.bfloat16).encode(x, "v2")
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape
    assert (low.float() - ref).norm() / ref.norm() < 0.03


def test_enum_pickled_by_name_loads_but_getattr_on_real_objects_is_refused(tmp_path):
    from engine.weights import plain, safe_torch_load

    path = tmp_path / "h312.pt"
    checkpoint_with_enum_by_name(path, tiny_hubert_config(num_heads=4))
    assert "builtins.getattr" in checkpoint_globals(path)
    ckpt = safe_torch_load(path)
    assert plain(ckpt["args"])["extractor_mode"] == "default"
    assert load_content_encoder(path).model.cfg.num_heads == 4
    # getattr reaching into a real object (here dict.fromkeys) is refused.
    bad = tmp_path / "getattr.pt"
    torch.save({"args": argparse.Namespace(x=EnumByName(dict, "fromkeys")), "model": {}}, bad)
    with pytest.raises(ModelFormatError) as info:
        safe_torch_load(bad)
    assert _one_sentence(str(info.value))
