"""The embedded broker and the Pulsar features the live harness relies on.

Only what a real Pulsar cluster offers: Shared subscriptions, acks, negative
acks, batch receive. Delivery is at-least-once, so receivers dedupe by id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import socket
import time

import pulsar
import pytest

from live.wire.broker import BrokerError, EmbeddedBroker, connect, free_port, topic

pytestmark = pytest.mark.live

SHARED = pulsar.ConsumerType.Shared
EARLIEST = pulsar.InitialPosition.Earliest


def _drain(consumers, expected: set[str], timeout_s: float = 20.0) -> dict[int, list[str]]:
    """Receive round-robin from ``consumers`` and ack, until every id in ``expected`` was seen."""
    got: dict[int, list[str]] = {i: [] for i in range(len(consumers))}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while seen != expected and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            try:
                msg = c.receive(timeout_millis=50)
            except pulsar.Timeout:
                continue
            mid = msg.data().decode()
            got[i].append(mid)
            seen.add(mid)
            c.acknowledge(msg)
    return got


def test_topic_name():
    assert topic("run7", "requests") == "persistent://public/default/edgebatch-run7-requests"
    with pytest.raises(ValueError):
        topic("a/b", "x")
    with pytest.raises(ValueError):
        topic("run", "")


def test_broker_listens_on_loopback(broker):
    assert broker.running
    assert broker.url == f"pulsar://127.0.0.1:{broker.port}"
    with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
        pass
    with socket.create_connection(("127.0.0.1", broker.http_port), timeout=1):
        pass
    assert broker.log_path.parent == broker.folder
    assert broker.config_path.read_text().count("127.0.0.1") == 2


def test_shared_subscription_two_consumers(client, topic_name):
    t = topic_name("shared")
    n = 200
    kw = dict(consumer_type=SHARED, initial_position=EARLIEST, receiver_queue_size=10)
    consumers = [client.subscribe(t, "workers", consumer_name=f"w{i}", **kw) for i in range(2)]
    producer = client.create_producer(t, batching_enabled=False)
    expected = {f"req-{i}" for i in range(n)}
    for mid in sorted(expected):
        producer.send_async(mid.encode(), None)
    producer.flush()

    got = _drain(consumers, expected)

    received = set(got[0]) | set(got[1])
    assert received == expected  # duplicates allowed (at-least-once), losses are not
    assert got[0] and got[1], "a Shared subscription should spread the load over both consumers"
    for c in consumers:
        c.close()
    producer.close()


def test_negative_ack_redelivers(client, topic_name):
    t = topic_name("nack")
    c = client.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST,
                         negative_ack_redelivery_delay_ms=100)
    p = client.create_producer(t)
    p.send(b"retry-me")
    first = c.receive(timeout_millis=5000)
    assert first.data() == b"retry-me"
    c.negative_acknowledge(first)
    again = c.receive(timeout_millis=5000)
    assert again.data() == b"retry-me"
    assert again.redelivery_count() >= 1
    c.acknowledge(again)
    with pytest.raises(pulsar.Timeout):
        c.receive(timeout_millis=300)
    c.close()
    p.close()


def test_unacked_message_goes_to_another_consumer_when_one_closes(client, topic_name):
    t = topic_name("crash")
    a = client.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST)
    p = client.create_producer(t)
    p.send(b"job")
    assert a.receive(timeout_millis=5000).data() == b"job"  # received, never acked
    a.close()
    b = client.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST)
    msg = b.receive(timeout_millis=5000)
    assert msg.data() == b"job"
    b.acknowledge(msg)
    b.close()
    p.close()


def test_batch_receive(client, topic_name):
    t = topic_name("batch")
    policy = pulsar.ConsumerBatchReceivePolicy(10, -1, 200)  # max 10 messages, no byte cap, 200 ms
    c = client.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST,
                         batch_receive_policy=policy)
    p = client.create_producer(t)
    expected = {f"m{i}" for i in range(25)}
    for mid in sorted(expected):
        p.send_async(mid.encode(), None)
    p.flush()
    seen: set[str] = set()
    sizes = []
    deadline = time.monotonic() + 15
    while seen != expected and time.monotonic() < deadline:
        msgs = c.batch_receive()
        sizes.append(len(msgs))
        for m in msgs:
            seen.add(m.data().decode())
            c.acknowledge(m)
    assert seen == expected
    assert max(sizes) > 1 and max(sizes) <= 10, sizes
    c.close()
    p.close()


@pytest.mark.parametrize("keep_data", [True, False])
def test_restart_on_same_port(tmp_path, keep_data):
    with EmbeddedBroker(tmp_path / "b", keep_data=keep_data) as b:
        data_root = b.data_path.parent
        assert (data_root == tmp_path / "b") is keep_data  # else a temporary folder outside the results
        port, url, http_port = b.port, b.url, b.http_port
        pid1 = b.pid
        t = topic("restart", "x")
        cl, _ = connect(url)
        c = cl.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST)
        p = cl.create_producer(t)
        p.send(b"before")
        m = c.receive(timeout_millis=5000)
        assert m.data() == b"before"
        c.acknowledge(m)
        p.send(b"pending")  # published, not yet consumed when the broker goes down
        cl.close()

        b.restart()
        assert (b.port, b.url, b.http_port) == (port, url, http_port)
        assert b.pid != pid1 and b.running
        with pytest.raises(ProcessLookupError):
            os.kill(pid1, 0)

        cl, _ = connect(url)
        c = cl.subscribe(t, "s", consumer_type=SHARED, initial_position=EARLIEST)
        p = cl.create_producer(t)
        p.send(b"after")
        got = _drain([c], {"pending", "after"}, timeout_s=10)
        # the pending message survived the restart (data on disk); acked ones are not redelivered
        assert set(got[0]) == {"pending", "after"}
        assert "before" not in got[0]
        cl.close()
    assert not b.running
    # closing removes a temporary data folder (never the caller's), and only that
    assert data_root.exists() is keep_data
    assert (tmp_path / "b" / "pulsar-lite.log").is_file()


def test_connect_embedded_and_token(tmp_path):
    client, b = connect(None, embedded_folder=str(tmp_path / "emb"))
    try:
        assert b is not None and b.running
        c = client.subscribe(topic("conn", "x"), "s", consumer_type=SHARED, initial_position=EARLIEST)
        client.create_producer(topic("conn", "x")).send(b"hi")
        assert c.receive(timeout_millis=5000).data() == b"hi"
        client.close()
        # token auth is passed through (pulsar-lite accepts but does not check it)
        client, none = connect(b.url, auth_token="header.payload.sig")
        assert none is None
        client.create_producer(topic("conn", "y")).send(b"ok")
    finally:
        client.close()
        b.stop()
    assert not b.running


def test_connect_passes_tls_and_token_through(tmp_path):
    """Building a client for an external TLS URL contacts nothing until it is used."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a certificate\n")
    client, b = connect("pulsar+ssl://127.0.0.1:6651", auth_token="t0k3n",
                        tls_trust_certs_file=str(ca), tls_allow_insecure=True)
    assert b is None
    client.close()


def test_start_fails_clearly_when_port_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerError, match=f"{port}.*already in use"):
            EmbeddedBroker(tmp_path / "x", port=port).start()


def test_start_fails_clearly_when_binary_exits(tmp_path):
    script = tmp_path / "fake-broker"
    script.write_text("#!/bin/sh\necho 'fatal: cannot open database' >&2\nexit 3\n")
    script.chmod(0o755)
    b = EmbeddedBroker(tmp_path / "y", binary=str(script), start_timeout_s=5)
    with pytest.raises(BrokerError, match=r"(?s)exited with code 3.*cannot open database"):
        b.start()
    assert not b.running


def test_start_times_out_with_log_tail(tmp_path):
    script = tmp_path / "silent-broker"
    script.write_text("#!/bin/sh\necho 'still thinking'\nexec sleep 30\n")
    script.chmod(0o755)
    b = EmbeddedBroker(tmp_path / "z", binary=str(script), start_timeout_s=0.5, stop_grace_s=2)
    with pytest.raises(BrokerError, match=r"(?s)within.*still thinking"):
        b.start()
    assert not b.running


def test_free_port_is_bindable():
    p = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", p))


def test_a_broker_url_where_nothing_listens_fails_at_once_naming_the_url(tmp_path):
    from experiments.paths import REPO_ROOT
    from live.wire.broker import free_port

    url = f"pulsar://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "experiments.run", "backend=live", f"+live.broker.url={url}", "num_requests=20",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    took_s = time.monotonic() - started
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: no Pulsar broker answers at " + url), done.stderr[-2000:]
    # the run's own start-up (imports, config) plus the 3 s probe; the client alone retried for 30 s
    assert took_s < 20, took_s


def test_tls_verifies_the_host_name_unless_told_not_to():
    from live.wire.broker import client_options

    options = client_options("pulsar+ssl://broker.example:6651", tls_trust_certs_file="/ca.pem")
    assert options["use_tls"] and options["tls_validate_hostname"] is True
    assert options["tls_allow_insecure_connection"] is False
    assert client_options("pulsar+ssl://b:6651", tls_validate_hostname=False)["tls_validate_hostname"] is False
    assert "use_tls" not in client_options("pulsar://127.0.0.1:6650")
