"""Open ingress under a gateway crash: every client request is answered once and recorded once.

The gateway is SIGKILLed while a client sends (the orchestrator restarts
it). What the broker gives the successor again it serves; what pulsar-lite
keeps with the dead gateway's consumer the client sends again after
``resend_after_s``, and the successor takes that copy.
"""

from __future__ import annotations

import os
import signal

import pytest

from live.client import EdgebatchClient
from live.deploy.local import run_live
from live.deploy.processes import ControlChannel
from live.wire.broker import connect
from live.wire.messages import KEY_ENV
from tests.live.test_harness import edge_config

COUNT = 150
GAP_S = 0.02  # 50 req/s
KILL_AT = 60  # the request after which the gateway is killed


def _clients(handle, seen: dict) -> None:
    client, _ = connect(handle.broker_url)
    try:
        user = EdgebatchClient(client, handle.run_id, "user", os.environ[KEY_ENV], gateway="edge", resend_after_s=1.5)
        ids = []
        for k in range(COUNT):
            handle.sleep_until(GAP_S * k)
            ids.append(user.submit(bytes([k % 256]) * 64))
            if k == KILL_AT:
                os.kill(handle.pid("gateway-edge"), signal.SIGKILL)  # with requests queued and batches out
        seen["replies"] = [user.result(i, timeout_s=30) for i in ids]
        seen["stats"] = dict(user.stats)
        user.close()
        ControlChannel(client, handle.run_id, source="run").stop()
    finally:
        client.close()


def test_a_gateway_killed_while_clients_send_answers_every_request_once(broker, tmp_path, monkeypatch):
    config = edge_config(num_requests=1, rate_rps=1.0)
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["ingress"] = {"mode": "open", "clients": {"user": {"slo_s": 30.0}}, "drain_s": 3.0}
    monkeypatch.setenv(KEY_ENV, os.urandom(32).hex())
    seen: dict = {}
    result = run_live(config, tmp_path / "run", on_start=lambda handle: _clients(handle, seen))
    assert result.summary["restarts"] == 1 and result.extra["restarts"] == {"gateway-edge": 1}
    replies = seen["replies"]
    assert len(replies) == COUNT and all(r.ok for r in replies), [r for r in replies if not r.ok][:3]
    assert seen["stats"]["answered"] == COUNT  # once each: later copies of an answer are only counted
    requests = result.requests
    assert len(requests) == COUNT and not requests.dropped.any()  # recorded once each
    assert requests.latency_s.max() < 15.0
    print(f"\n[fault figures] open-ingress gateway kill: resent={seen['stats']['resent']} "
          f"duplicates_rejected={seen['stats']['duplicates_rejected']} worst_latency_s={requests.latency_s.max():.2f}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q", "-s"]))
