"""Who may connect and what they may see (sans-IO): the upgrade's admission, the
``Host`` policy, API keys and signed tokens, a token's channel permissions and its
renewal on an open connection, the ``metrics`` snapshot filtered per permission set,
and the limits of one ``subscribe``.

Internal: import from ``takhin_ws`` and its public tiers."""
