"""The unified log: topics, the log port, the consumer runtime. Backends live in adapters/.

- ``topics``   the topic taxonomy (``REGISTRY``, ``topic()``, ``dlq_topic()``, partitioner)
- ``log``      the port every backend implements (``Log``, ``Consumer``, ``Record``, ``Output``)
- ``emit``     ``Emit`` (what handlers return) and ``to_output`` (envelope -> log record with
               ``id``/``type``/``traceparent`` headers): every producer uses it
- ``runtime``  ``StreamProcessor``: poll -> dedup -> decode -> handle -> one atomic commit of
               outputs + offsets + processed ids; retries by error class, dead letters, rebuild
- ``batch``    the per-batch loop and the rebuild replay used by ``runtime``
- ``retry``    the error policy (retry / dead-letter / stop) and backoff
- ``dlq``      dead-letter records and the operator tools (list, show, replay)
- ``embedded`` the ``Log`` implementation shared by ``MemoryLog`` and ``SqliteLog``
- ``groups``   in-process consumer groups (cooperative rebalancing)
- ``dedup``, ``decoding``, ``records``, ``hot``, ``metrics``: bounded id windows, shared
               decoding, fast records, hot-partition detection, Prometheus metrics
"""
