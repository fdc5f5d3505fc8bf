"""Alpha Panda: event-driven algorithmic trading for Indian markets."""
__version__ = "0.1.0"
