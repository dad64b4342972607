"""htdemucs: the real HTDemucs class, weights in Demucs' own on-disk format, loaded by engine.weights."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("demucs_infer")

from engine.errors import ModelFormatError, VoiceError  # noqa: E402
from engine.separation import demucs, get_separator  # noqa: E402
from engine.voices.rvc.assets import download_asset  # noqa: E402
from tests.separation.tiny_demucs import save_demucs_file, serve_bytes, tiny_htdemucs  # noqa: E402

DATA = Path(__file__).parents[1] / "data"
SONG = DATA / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return save_demucs_file(tiny_htdemucs(), tmp_path_factory.mktemp("demucs") / demucs.WEIGHTS_FILE)


def test_the_file_names_the_upstream_class_and_a_fraction(tiny_file):
    from engine.weights import checkpoint_globals

    names = checkpoint_globals(tiny_file)
    assert "demucs.htdemucs.HTDemucs" in names and "fractions.Fraction" in names


def test_loads_into_the_real_class_with_the_same_weights(tiny_file):
    from demucs_infer.htdemucs import HTDemucs

    model = demucs.load_htdemucs(tiny_file)
    assert type(model) is HTDemucs and not model.training
    ref = tiny_htdemucs().state_dict()
    got = model.state_dict()
    assert all(np.array_equal(ref[k].numpy(), got[k].numpy()) for k in ref)
    assert float(model.segment) == pytest.approx(7.8)
    # not the published file: used, and the user is told
    assert "not the published htdemucs file" in demucs.DemucsSeparator.from_file(tiny_file).note


def test_separates_a_real_song_into_stems_that_sum_to_it(tiny_file):
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    x = x[: 3 * sr]
    seen: list[float] = []
    stems = demucs.DemucsSeparator.from_file(tiny_file).separate(x, sr, progress=seen.append)
    assert stems.vocals.shape == x.shape == stems.accompaniment.shape
    assert np.allclose(stems.vocals + stems.accompaniment, x, atol=1e-5)
    assert np.all(np.isfinite(stems.vocals)) and seen and seen[-1] == 1.0


def test_a_cancel_stops_the_separation(tiny_file):
    from engine.separation import SeparationCancelled

    stop = threading.Event()
    stop.set()
    x = np.zeros((44100 * 2, 2), np.float32)
    with pytest.raises(SeparationCancelled):
        demucs.DemucsSeparator.from_file(tiny_file).separate(x, 44100, cancel=stop)


def test_another_demucs_class_is_refused_by_name(tmp_path):
    path = save_demucs_file(tiny_htdemucs(), tmp_path / "other.th", klass_module="demucs.hdemucs", klass_name="HDemucs")
    with pytest.raises(ModelFormatError, match="HDemucs, not HTDemucs"):
        demucs.load_htdemucs(path)


def test_a_state_that_does_not_fit_is_refused(tmp_path):
    model = tiny_htdemucs()
    path = tmp_path / "bad.th"
    save_demucs_file(model, path)
    import torch

    pkg = torch.load(path, weights_only=False)  # our own test file
    pkg["state"] = {k: (v[..., :1] if v.ndim else v) for k, v in pkg["state"].items()}
    torch.save(pkg, path)
    with pytest.raises(ModelFormatError, match="does not fit"):
        demucs.load_htdemucs(path)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    import torch

    path = tmp_path / demucs.WEIGHTS_FILE
    torch.save({"klass": None, "kwargs": {}, "state": {}, "x": _RunsCode()}, path, pickle_protocol=2)
    with pytest.raises(ModelFormatError, match="could run code"):
        demucs.load_htdemucs(path)


def test_missing_weights_name_the_file_the_source_and_the_folder(tmp_path):
    with pytest.raises(VoiceError) as err:
        get_separator("htdemucs", tmp_path / "models")
    msg = str(err.value)
    assert demucs.WEIGHTS_FILE in msg and demucs.WEIGHTS_URL in msg and str(tmp_path / "models") in msg
    assert msg.count(". ") == 0  # one sentence
    # "auto" falls back to the stereo separator and says why
    sep = get_separator("auto", tmp_path / "models")
    assert sep.name == "stereo" and demucs.WEIGHTS_FILE in sep.note


@pytest.fixture
def http_file(tiny_file):
    """A real HTTP server on 127.0.0.1 serving the tiny model file."""
    body = tiny_file.read_bytes()
    with serve_bytes(body) as base:
        yield f"{base}/{demucs.WEIGHTS_FILE}", hashlib.sha256(body).hexdigest(), len(body)


def test_fetch_downloads_once_with_progress_and_checks_the_hash(http_file, tmp_path):
    url, sha, size = http_file
    models = tmp_path / "models"
    seen: list[tuple[int, int | None]] = []
    path = demucs.fetch_weights(models, download_asset, url=url, sha256=sha, progress=lambda d, t: seen.append((d, t)))
    assert path == models / demucs.WEIGHTS_FILE and path.stat().st_size == size
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert get_separator("auto", models).name == "htdemucs"  # installed: auto now picks it
    seen.clear()
    demucs.fetch_weights(models, download_asset, url=url, sha256=sha, progress=lambda d, t: seen.append((d, t)))
    assert seen == []  # already there with the right hash: not fetched again


def test_a_download_with_the_wrong_hash_is_discarded(http_file, tmp_path):
    url, _sha, _size = http_file
    models = tmp_path / "models"
    with pytest.raises(VoiceError, match="SHA-256"):
        demucs.fetch_weights(models, download_asset, url=url, sha256="0" * 64)
    assert list(models.iterdir()) == []


def test_an_unreachable_server_is_one_sentence(tmp_path):
    with pytest.raises(VoiceError, match="Could not download"):
        demucs.fetch_weights(tmp_path, download_asset, url="http://127.0.0.1:9/none.th", sha256="0" * 64, timeout_s=2)
