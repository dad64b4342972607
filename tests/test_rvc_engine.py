"""RVC voices through the whole product: import, CLI conversion, live engine, missing-file messages."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")

from tests.conftest import DATA  # noqa: E402
from tests.rvc.helpers_frontend import tiny_fairseq_hubert_checkpoint, tiny_hubert_config  # noqa: E402
from tests.rvc.tiny_models import write_tiny_pth  # noqa: E402

FAST = ["--param", "f0_method=dsp", "--param", "block_ms=300", "--param", "extra_ms=400", "--param", "crossfade_ms=40"]


def autovoice(*args):
    return subprocess.run([sys.executable, "-m", "autovoice", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


@pytest.fixture
def tiny_voice(tmp_path):
    pth = write_tiny_pth(tmp_path / "tiny.pth", "v1", True, 32000, seed=2)
    assert autovoice("voices", "import", pth).returncode == 0
    return "tiny"


def install_content_encoder(tmp_path):
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True, exist_ok=True)
    tiny_fairseq_hubert_checkpoint(models / "hubert_base.pt", tiny_hubert_config(final_dim=256))


def test_missing_content_encoder_names_the_file_and_the_folder(tmp_path, tiny_voice):
    proc = autovoice("convert", DATA / "freesound136777_davidbain_M_xmas.wav", "-o", tmp_path / "o.wav",
                     "--voice", tiny_voice, *FAST)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "hubert_base.pt" in proc.stderr and str(tmp_path / "data" / "models") in proc.stderr
    assert "huggingface" in proc.stderr.lower()
    assert not (tmp_path / "o.wav").exists()


def test_convert_a_file_with_an_rvc_voice(tmp_path, tiny_voice):
    install_content_encoder(tmp_path)
    src = DATA / "freesound136777_davidbain_M_xmas.wav"
    out = tmp_path / "o.flac"
    proc = autovoice("convert", src, "-o", out, "--voice", tiny_voice, "--transpose", "3", *FAST, "--quiet")
    assert proc.returncode == 0, proc.stderr
    x, sr = sf.read(src, dtype="float32")
    y, sr_out = sf.read(out, dtype="float32")
    assert sr_out == sr and len(y) == len(x)
    assert np.all(np.isfinite(y)) and np.sqrt(np.mean(y ** 2)) > 1e-3


def test_rvc_voice_runs_live_through_jack(tmp_path, tiny_voice, jack_server):
    from engine.api import Engine

    install_content_encoder(tmp_path)
    e = Engine(load_default_voice=False)
    try:
        e.load_voice(tiny_voice, {"f0_method": "dsp", "block_ms": 300, "extra_ms": 400, "crossfade_ms": 40}).result()
        assert e.voice.hop_samples == int(0.3 * 32000)
        e.start("system", "system")
        deadline = time.monotonic() + 20
        while e.snapshot().blocks_processed < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        s = e.snapshot()
        assert s.blocks_processed >= 10 and s.voice_kind == "rvc" and s.voice_sample_rate == 32000
        # Reported latency includes the voice's look-ahead (crossfade + SOLA search) on top of the block.
        assert s.algorithmic_latency_ms > 300
        # Changing the block size rebuilds the voice without stopping the stream.
        e.set_params(block_ms=200)
        deadline = time.monotonic() + 20
        while not (e.voice.hop_samples == int(0.2 * 32000) and e.running) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert e.voice.hop_samples == int(0.2 * 32000) and e.running, e.last_error
        assert e.snapshot().block_ms == pytest.approx(200.0)  # the compute budget is the voice's block
        assert e.snapshot().algorithmic_latency_ms > 200
    finally:
        e.close()


def test_export_onnx_command(tmp_path):
    pth = write_tiny_pth(tmp_path / "m.pth", "v2", True, 40000)
    proc = autovoice("export-onnx", pth)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.onnx").exists()
    diff = float(proc.stdout.split("test input: ")[1].split(" ")[0])
    assert diff < 1e-4
    again = autovoice("export-onnx", pth)
    assert again.returncode == 1 and "already exists" in again.stderr
