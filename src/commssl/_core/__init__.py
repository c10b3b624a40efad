"""The binding and the rules every layer above relies on: pointer lifetimes, ownership."""
