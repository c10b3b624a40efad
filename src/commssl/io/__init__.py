"""Connections: the TLS state machine, the policy each one is held to, the accessors."""
