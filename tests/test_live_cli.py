"""`autovoice live`'s flags for remembered audio settings: each can be set either way, and leaving a
flag out keeps what was saved (a flag that could only turn a setting off would be off for good)."""

from __future__ import annotations

import pytest

from engine.cli import _audio_changes, build_parser


def changes(*argv: str) -> dict:
    return _audio_changes(build_parser().parse_args(["live", *argv]))


def test_each_remembered_switch_goes_both_ways_and_absent_means_as_saved():
    assert changes() == {}
    assert changes("--fixed-latency", "--normal-priority") == {"adaptive_buffer": False, "realtime_priority": False}
    assert changes("--adaptive-latency", "--realtime-priority") == {"adaptive_buffer": True, "realtime_priority": True}
    assert changes("--block-ms", "20", "--prefill-ms", "15") == {"block_ms": 20.0, "prefill_ms": 15.0}


@pytest.mark.parametrize("pair", [("--fixed-latency", "--adaptive-latency"), ("--normal-priority", "--realtime-priority")])
def test_both_sides_of_a_switch_at_once_is_refused(pair, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["live", *pair])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
