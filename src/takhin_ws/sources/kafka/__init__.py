"""The ``kafka`` source: a cluster read over the Kafka protocol (confluent-kafka, the
``kafka`` extra), in a collector process of its own.

Nothing here is imported until the source is used: import from :mod:`takhin_ws.sources`."""
