"""How the collector asks the cluster: confluent-kafka's AdminClient with its bounded
retries (client, requests), and start and end offsets (offsets), read over the Kafka
protocol itself where the listener is plaintext (listoffsets).

Runs in the collector process only. Internal: import from ``takhin_ws`` and its public
tiers."""
