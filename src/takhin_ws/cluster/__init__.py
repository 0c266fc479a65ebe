"""Scale-out: several takhin-ws nodes sharing one Redis (coredis; the ``redis`` extra).

- :mod:`~takhin_ws.cluster.bus`: :class:`RedisBus`, the Redis Streams event bus (every
  node publishes into Redis and is fed from it: same messages, offsets and epoch);
- :mod:`~takhin_ws.cluster.lease`: :class:`MetricsLease`, which node collects the
  metrics (leader election through a key with a TTL);
- :mod:`~takhin_ws.cluster.entries`: what a stream entry holds, and how it becomes the
  hub's :class:`~takhin_ws.lowlevel.Outbound` (sans-IO, needs no Redis);
- :mod:`~takhin_ws.cluster.scripts`: the Lua scripts (package data in ``lua/``);
- :mod:`~takhin_ws.cluster.connection`: coredis clients, key names, failure texts.

``bus``, ``lease`` and ``connection`` import coredis; import them (not this package)
when you need them, so that ``entries`` and ``scripts`` work without it.
"""
