"""Configuration: settings, the option table, value checks and the command line.

Internal: import from ``takhin_ws`` and its public tiers."""
