"""Song jobs over HTTP against a real `autovoice serve` on 127.0.0.1, including a crash and restart mid-job."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile as sf

from tests.server.helpers import DATA, server_env, start_server

SONG = DATA / "StevenMBryant_SlowMotionDream_excerpt_stereo44k.mp3"
JOBS = "/api/v1/jobs"


def song_bytes(seconds: float | None = 4.0, loops: int = 1) -> tuple[bytes, tuple[int, int], int]:
    x, sr = sf.read(SONG, dtype="float32", always_2d=True)
    x = np.tile(x, (loops, 1)) if loops > 1 else x[sr: sr + int(seconds * sr)]
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="FLAC")
    return buf.getvalue(), x.shape, sr


def submit(server, data: bytes, name: str = "song.flac", **fields):
    form = {"voice": "deeper", "separator": "stereo", **{k: str(v) for k, v in fields.items()}}
    with server.client() as c:
        return c.post(JOBS, files={"file": (name, data, "audio/flac")}, data=form)


def wait_for(server, job_id: str, until, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = server.get(f"{JOBS}/{job_id}").json()
        if until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def finished(job: dict) -> bool:
    return job["state"] not in ("queued", "running")


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("jobs"))
    yield s
    assert s.stop() == 0, "".join(s.log)
    assert "Traceback" not in "".join(s.log), "".join(s.log)


def test_a_job_gives_a_cover_and_its_stems(jobs_server):
    data, shape, sr = song_bytes()
    r = submit(jobs_server, data, stems="true", key=2)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"{JOBS}/{job['id']}" and job["state"] == "queued"
    stages_seen = set()
    done = wait_for(jobs_server, job["id"], lambda j: stages_seen.add(j["stage"]) or finished(j))
    assert done["state"] == "done", done
    assert done["progress"] == 1.0 and set(done["stage_seconds"]) == {"separate", "pitch", "convert", "mix"}
    assert done["stems"] == ["accompaniment", "converted_vocals", "vocals"]
    res = jobs_server.get(f"{JOBS}/{job['id']}/result")
    assert res.status_code == 200 and "song_deeper.flac" in res.headers["content-disposition"]
    y, sr_y = sf.read(io.BytesIO(res.content), always_2d=True)
    assert y.shape == shape and sr_y == sr and np.max(np.abs(y)) < 1.0
    stem = jobs_server.get(f"{JOBS}/{job['id']}/stems/vocals")
    assert stem.status_code == 200 and sf.read(io.BytesIO(stem.content), always_2d=True)[0].shape == shape
    assert jobs_server.get(f"{JOBS}/{job['id']}/stems/drums").status_code == 404
    assert jobs_server.metric("autovoice_song_jobs_finished_total", 'outcome="done"') >= 1
    assert jobs_server.metric("autovoice_song_job_stage_seconds_count", 'stage="separate"') >= 1
    assert any(j["id"] == job["id"] for j in jobs_server.get(JOBS).json())


def test_delete_cancels_a_running_job_and_then_removes_it(jobs_server):
    data, _, _ = song_bytes(loops=6)
    job = submit(jobs_server, data).json()
    wait_for(jobs_server, job["id"], lambda j: j["state"] == "running")
    with jobs_server.client() as c:
        r = c.delete(f"{JOBS}/{job['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    gone = jobs_server.get(f"{JOBS}/{job['id']}/result")
    assert gone.status_code == 410 and "cancelled" in gone.json()["error"]
    with jobs_server.client() as c:
        assert c.delete(f"{JOBS}/{job['id']}").json()["state"] == "deleted"
    assert jobs_server.get(f"{JOBS}/{job['id']}").status_code == 404
    assert jobs_server.metric("autovoice_song_jobs_finished_total", 'outcome="cancelled"') >= 1


def test_bad_requests_get_one_sentence_each(tmp_path):
    server = start_server(tmp_path, "--max-audio-s", "3", "--max-job-upload-mb", "2")
    try:
        data, _, _ = song_bytes(seconds=2.0)
        with server.client() as c:
            r = c.post(JOBS, content=data, headers={"content-type": "audio/flac"})
        assert r.status_code == 415 and "multipart" in r.json()["error"]
        r = submit(server, b"not a song at all" * 100, name="notes.txt")
        assert r.status_code == 415 and "not audio" in r.json()["error"]
        r = submit(server, data, voice="Nobody")
        assert r.status_code == 404 and "no voice" in r.json()["error"]
        r = submit(server, data, key=30)
        assert r.status_code == 422 and "--key" in r.json()["error"]
        r = submit(server, data, separator="htdemucs")
        assert r.status_code == 422 and "955717e8-8726e21a.th" in r.json()["error"]
        r = submit(server, data, params="[1, 2]")
        assert r.status_code == 422 and "JSON object" in r.json()["error"]
        long_song, _, _ = song_bytes(seconds=5.0)
        r = submit(server, long_song)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        big, _, _ = song_bytes(loops=3)
        r = submit(server, big)
        assert r.status_code == 413 and "MB" in r.json()["error"]
        r = server.get(f"{JOBS}/0123456789abcdef")
        assert r.status_code == 404 and "no job" in r.json()["error"]
        silent = io.BytesIO()
        sf.write(silent, np.zeros((44100 * 2, 2), np.float32), 44100, format="WAV")
        job = submit(server, silent.getvalue(), name="silent.wav").json()
        failed = wait_for(server, job["id"], finished)
        assert failed["state"] == "failed" and "silent" in failed["error"]
        assert server.get(f"{JOBS}/{job['id']}/result").status_code == 410
    finally:
        assert server.stop() == 0


def test_a_restart_in_the_middle_loses_nothing(tmp_path):
    env = server_env(tmp_path)
    first = start_server(tmp_path, "--max-jobs", "2", env=env)
    short, short_shape, sr = song_bytes()
    long_song, long_shape, _ = song_bytes(loops=6)
    try:
        early = submit(first, short).json()
        assert wait_for(first, early["id"], finished)["state"] == "done"
        running = submit(first, long_song).json()
        queued = submit(first, short).json()
        refused = submit(first, short)
        assert refused.status_code == 429 and "limit" in refused.json()["error"]
        wait_for(first, running["id"], lambda j: j["state"] == "running" and j["stage"] in ("pitch", "convert"))
    finally:
        first.proc.kill()  # a crash, not a shutdown: the job stays "running" in the database
        first.proc.wait()
    second = start_server(tmp_path, "--max-jobs", "2", env=env)
    try:
        kept = second.get(f"{JOBS}/{early['id']}/result")  # finished before the crash: still there
        assert kept.status_code == 200 and sf.read(io.BytesIO(kept.content), always_2d=True)[0].shape == short_shape
        resumed = second.get(f"{JOBS}/{running['id']}").json()
        assert "restart" in (resumed["note"] or ""), resumed
        done = wait_for(second, running["id"], finished)
        assert done["state"] == "done", done
        y, sr_y = sf.read(io.BytesIO(second.get(f"{JOBS}/{running['id']}/result").content), always_2d=True)
        assert y.shape == long_shape and sr_y == sr
        assert wait_for(second, queued["id"], finished)["state"] == "done"
    finally:
        assert second.stop() == 0, "".join(second.log)
