"""Refusals: every file that is not an RVC inference model gets one sentence saying what it is and
what to use instead, and nothing in a .pth is ever executed."""

from __future__ import annotations

import pickle

import pytest
import torch

from engine.errors import ModelFormatError, VoiceError
from engine.voices.rvc.checkpoint import expected_shapes, read_checkpoint
from tiny_models import (
    tiny_config,
    write_discriminator_checkpoint,
    write_malicious_pth,
    write_sovits_checkpoint,
    write_tiny_pth,
    write_training_checkpoint,
    write_truncated_pth,
)


def _refusal(path) -> str:
    with pytest.raises(ModelFormatError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.count("\n") == 0 and message.endswith(".")
    assert path.name in message
    return message


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = write_malicious_pth(tmp_path / "voice.pth", marker, zip_format=zip_format)
    # the payload is real: plain pickle would run it
    if not zip_format:
        with open(path, "rb") as fh:
            pickle.load(fh)
        assert marker.exists()
        marker.unlink()
    message = _refusal(path)
    assert not marker.exists()
    assert "refuses" in message or "not a PyTorch model" in message


def test_malicious_zip_pickle_names_the_code_it_would_run(tmp_path):
    marker = tmp_path / "pwned"
    message = _refusal(write_malicious_pth(tmp_path / "voice.pth", marker))
    assert "could run code" in message and "system" in message
    assert not marker.exists()


def test_training_checkpoint(tmp_path):
    message = _refusal(write_training_checkpoint(tmp_path / "G_1200.pth"))
    assert "training checkpoint" in message and "assets/weights" in message


def test_discriminator_checkpoint(tmp_path):
    assert "discriminator" in _refusal(write_discriminator_checkpoint(tmp_path / "D_1200.pth"))


def test_so_vits_svc_model(tmp_path):
    assert "so-vits-svc" in _refusal(write_sovits_checkpoint(tmp_path / "G_10.pth"))


def test_some_other_pickle(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"epoch": 3, "net": {"fc.weight": torch.zeros(2, 2)}}, path)
    assert "other model" in _refusal(path)
    torch.save([1, 2, 3], path)
    assert "list" in _refusal(path)


def test_truncated_file(tmp_path):
    good = write_tiny_pth(tmp_path / "good.pth")
    message = _refusal(write_truncated_pth(good, tmp_path / "cut.pth"))
    assert "truncated or damaged" in message


def test_text_file(tmp_path):
    path = tmp_path / "readme.pth"
    path.write_text("This is not a model, just some notes.\n")
    assert "not a" in _refusal(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty" in _refusal(empty)
    with pytest.raises(VoiceError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")


def _rewrite(path, edit):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    edit(obj)
    torch.save(obj, path)
    return path


def test_missing_and_unexpected_keys(tmp_path):
    path = _rewrite(write_tiny_pth(tmp_path / "a.pth"), lambda o: o["weight"].pop("dec.conv_post.weight"))
    assert "1 missing (e.g. dec.conv_post.weight)" in _refusal(path)
    path = _rewrite(write_tiny_pth(tmp_path / "b.pth"), lambda o: o["weight"].update({"dec.extra.weight": torch.zeros(1)}))
    assert "unexpected (e.g. dec.extra.weight)" in _refusal(path)


def test_enc_q_weights_left_in_are_ignored(tmp_path):
    path = _rewrite(write_tiny_pth(tmp_path / "a.pth"), lambda o: o["weight"].update({"enc_q.pre.weight": torch.zeros(3)}))
    assert read_checkpoint(path).f0


def test_shapes_that_do_not_match_the_config(tmp_path):
    def widen(o):
        o["config"][3] = 32  # hidden_channels

    message = _refusal(_rewrite(write_tiny_pth(tmp_path / "a.pth"), widen))
    assert "shape" in message


def test_pitch_flag_that_does_not_match_the_weights(tmp_path):
    path = _rewrite(write_tiny_pth(tmp_path / "a.pth", f0=True), lambda o: o.update(f0=0))
    assert "unexpected" in _refusal(path)


def test_version_that_does_not_match_the_weights(tmp_path):
    path = _rewrite(write_tiny_pth(tmp_path / "a.pth", "v2"), lambda o: o.update(version="v1"))
    assert "768-d" in _refusal(path)


def test_config_with_wrong_length_or_rate(tmp_path):
    path = _rewrite(write_tiny_pth(tmp_path / "a.pth"), lambda o: o.update(config=o["config"][:17]))
    assert "17 entries" in _refusal(path)
    path = _rewrite(write_tiny_pth(tmp_path / "b.pth", sample_rate=40000), lambda o: o.update(sr="48k"))
    assert "48k" in _refusal(path)


def test_key_names_are_rvcs():
    """A few names exactly as RVC saves them (weight norm kept as _g/_v pairs)."""
    keys = expected_shapes(tiny_config("v2", True, 40000))
    for k in (
        "enc_p.emb_phone.weight",
        "enc_p.emb_pitch.weight",
        "enc_p.encoder.attn_layers.0.emb_rel_k",
        "enc_p.encoder.norm_layers_1.0.gamma",
        "enc_p.encoder.ffn_layers.1.conv_2.bias",
        "dec.conv_pre.weight",
        "dec.ups.0.weight_g",
        "dec.ups.0.weight_v",
        "dec.resblocks.0.convs1.2.weight_v",
        "dec.noise_convs.3.weight",
        "dec.m_source.l_linear.weight",
        "dec.cond.weight",
        "flow.flows.6.enc.cond_layer.weight_g",
        "flow.flows.0.enc.res_skip_layers.2.weight_v",
        "flow.flows.0.post.bias",
        "emb_g.weight",
    ):
        assert k in keys, k
    assert not any(k.startswith("enc_q") or k.startswith("flow.flows.1.") for k in keys)
    assert keys["enc_p.emb_phone.weight"] == (16, 768)
