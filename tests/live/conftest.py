"""Fixtures for the live-harness tests: one embedded pulsar-lite broker per session."""

from __future__ import annotations

import uuid

import pytest

from live.wire.broker import EmbeddedBroker, connect, find_binary, topic


def _binary_or_skip() -> str:
    try:
        return find_binary()
    except FileNotFoundError as e:
        pytest.skip(f"pulsar-lite broker binary not found ({e}); install pulsar-lite to run live tests")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """An EmbeddedBroker on a free 127.0.0.1 port, data and log in a tmp dir; stopped at the end."""
    binary = _binary_or_skip()
    b = EmbeddedBroker(tmp_path_factory.mktemp("broker"), binary=binary)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def client(broker):
    """A pulsar.Client (warning-level logs) on the session broker."""
    c, _ = connect(broker.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def topic_name():
    """``topic_name(name)``: a topic unique to this test."""
    run_id = "test" + uuid.uuid4().hex[:10]
    return lambda name: topic(run_id, name)
