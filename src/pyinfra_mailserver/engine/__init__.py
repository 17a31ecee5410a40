"""The change engine: one snapshot of a host, one diff against its manifest, one set of operations."""
