"""What the hub makes of a metrics snapshot, without I/O: the snapshot a source produces
and its protocol, the views built from it once per tick, and the change events found
between two snapshots.

Internal: import from ``takhin_ws`` and its public tiers."""
