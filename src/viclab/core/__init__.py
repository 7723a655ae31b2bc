"""The bottom layer: errors, atomic file writes, the runtime (device, precision, ranks), hashing and the cache."""
