"""The read side: documents the projector writes to the cache and the API serves.

Keys are always prefixed by broker (``paper:positions``), so paper and live never share a
cache key. Amounts are int paise; the API renders them as exact rupee strings.
"""
