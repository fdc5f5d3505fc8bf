"""Health, metrics and tracing."""
