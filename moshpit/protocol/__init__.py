"""The sans-IO protocol: handshake and UDP channel as state machines (bytes and ``now`` in)."""
