"""Market data: instruments, the simulator, tick files."""
