"""The service's batch poller is a daemon thread: it ends with its Lab, without a word."""

from __future__ import annotations

import logging

import embedlab
import pytest
from embedlab.service.app import create_app


def test_poller_stops_quietly_when_its_lab_is_closed(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EMBEDLAB_BATCH_POLL_S", "0.05")
    lab = embedlab.open(tmp_path / "store", quiet=True)
    app = create_app(lab)
    poller = app.state.service.batch_poller
    thread = poller._thread
    assert thread is not None and thread.is_alive()
    caplog.set_level(logging.INFO)
    lab.close()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the poller kept running after its Lab was closed"
    said = [r.getMessage() for r in caplog.records if "batch poller" in r.getMessage()]
    assert said == []
