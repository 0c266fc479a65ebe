"""How the collector asks the cluster: confluent-kafka's AdminClient with its bounded
retries (client, requests); the metadata (metadata), start and end offsets (offsets)
and the groups' committed offsets, read over the Kafka protocol itself where the
listener is plaintext (metadata; listoffsets; groupoffsets, groupwire).

Runs in the collector process only. Internal: import from ``takhin_ws`` and its public
tiers."""
