"""The unified log: topics, the log port, the consumer runtime. Backends live in adapters/."""
