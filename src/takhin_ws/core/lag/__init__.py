"""The lag insight (sans-IO): lag in seconds, consume rates and Burrow-style statuses
computed once per tick, each group's recent lag for its chart, and a session's answer
to ``history`` for one group.

Internal: import from ``takhin_ws`` and its public tiers."""
