"""live.roles.gateway_receiver: every request message reaches the inbox once, alone or in bunches; stop ends the thread."""

from __future__ import annotations

import pulsar

from live.roles.gateway_inbox import Inbox
from live.roles.gateway_receiver import BATCH_POLICY, RequestReceiver


def test_every_message_reaches_the_inbox_once(client, topic_name):
    topic_name = topic_name("requests-edge")
    consumer = client.subscribe(topic_name, "gw", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest,
                                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(*BATCH_POLICY))  # fmt: skip
    producer = client.create_producer(topic_name, batching_enabled=False)
    for k in range(300):  # queued before the receiver starts: its first receives find them waiting
        producer.send_async(b"%d" % k, None)
    producer.flush()
    inbox = Inbox()
    receiver = RequestReceiver(consumer, inbox, "test").start()
    try:
        got = []
        while len(got) < 300:
            item = inbox.get(10.0)
            assert item is not None, f"only {len(got)} of 300 arrived"
            kind, source, msg = item
            assert kind == "request" and source is consumer
            got.append(int(msg.data()))
            consumer.acknowledge(msg)
        assert sorted(got) == list(range(300))
        producer.send(b"late")  # one more, alone
        kind, _, msg = inbox.get(10.0)
        assert msg.data() == b"late"
    finally:
        receiver.stop()
    assert not receiver._thread.is_alive()
    assert inbox.get(0) is None
    producer.close()
    consumer.close()
