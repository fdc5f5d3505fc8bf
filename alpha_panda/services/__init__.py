"""Composition roots: one plain function per service wires the pure core to adapters."""
