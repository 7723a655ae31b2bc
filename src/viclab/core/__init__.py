"""The bottom layer: errors, atomic writes, the runtime (device, precision, ranks), the context, hashing, the cache."""
