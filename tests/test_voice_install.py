"""`autovoice voices import/remove`: verified copies into the data folder, clear refusals."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from tests.rvc.tiny_models import write_malicious_pth, write_tiny_onnx, write_tiny_pth, write_training_checkpoint  # noqa: E402


def autovoice(*args):
    return subprocess.run([sys.executable, "-m", "autovoice", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def test_import_lists_and_removes_a_pth_voice(tmp_path):
    model = write_tiny_pth(tmp_path / "Alice.pth", "v2", True, 40000)
    proc = autovoice("voices", "import", model)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(autovoice("voices", "--json").stdout)
    alice = next(v for v in listed if v["name"] == "Alice")
    assert alice["kind"] == "rvc" and "v2" in alice["description"] and "40 kHz" in alice["description"]
    meta = json.loads((tmp_path / "data" / "voices" / "Alice" / "voice.json").read_text())
    assert meta["f0"] is True and meta["sample_rate"] == 40000 and len(meta["sha256"]) == 64
    assert model.exists()  # copied, never moved
    again = autovoice("voices", "import", model)
    assert again.returncode == 1 and "already installed" in again.stderr
    # Settings saved for it (as the app or `live --transpose` would) go with it: a different model
    # imported later under the same name must not inherit them.
    settings = tmp_path / "config" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"voice_params": {"Alice": {"transpose_st": 7.0}, "giant": {"transpose_st": -9.0}}}))
    assert autovoice("voices", "remove", "Alice").returncode == 0
    assert "Alice" not in autovoice("voices").stdout
    assert json.loads(settings.read_text())["voice_params"] == {"giant": {"transpose_st": -9.0}}


def test_import_onnx_voice_with_a_name(tmp_path):
    path, _ = write_tiny_onnx(tmp_path / "m.onnx", "v1", False, 32000, contract="wokada")
    proc = autovoice("voices", "import", path, "--name", "Bob v1")
    assert proc.returncode == 0, proc.stderr
    assert "Bob v1" in autovoice("voices").stdout


@pytest.mark.parametrize("kind", ["training", "malicious", "text", "builtin-name"])
def test_import_refusals_are_one_sentence_and_install_nothing(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "training":
        model = write_training_checkpoint(tmp_path / "G_2333.pth")
        needle = "training checkpoint"
    elif kind == "malicious":
        model = write_malicious_pth(tmp_path / "evil.pth", marker)
        needle = "evil.pth"
    elif kind == "text":
        model = tmp_path / "notes.pth"
        model.write_text("hello")
        needle = "notes.pth"
    else:
        model = write_tiny_pth(tmp_path / "deeper.pth")
        needle = "built-in voice"
    proc = autovoice("voices", "import", model)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert needle.lower() in proc.stderr.lower(), proc.stderr
    assert not marker.exists()  # the pickle's payload never ran
    voices = tmp_path / "data" / "voices"
    assert not voices.exists() or not any(p for p in voices.iterdir() if not p.name.startswith("."))
