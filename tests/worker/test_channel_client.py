"""worker.broker.channel_client: kombu's Redis channel keeps its redis-py client while its pool lasts."""

from __future__ import annotations

from kombu import Connection

from genesys_closer.worker.broker import channel_client


def test_a_channel_sends_every_command_through_one_client_while_its_pool_lasts(redis_url: str) -> None:
    channel_client.apply()
    channel_client.apply()  # idempotent
    with Connection(redis_url) as connection:
        channel = connection.channel()
        queue = connection.SimpleQueue("genesys-closer-test-channel-client", channel=channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        given = object()
        with channel.conn_or_acquire(given) as passed:  # a client the caller holds is used as it is
            assert passed is given
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}  # kombu's own commands go through it
        kept = channel.__dict__[channel_client._CACHED]
        channel._disconnect_pools()  # what a broker reconnect or a closing channel does
        with channel.conn_or_acquire() as after:
            assert after is not kept and after.connection_pool is channel.pool
            assert after.ping()
        queue.put({"n": 2})
        assert queue.get(timeout=5).payload == {"n": 2}
        queue.close()
