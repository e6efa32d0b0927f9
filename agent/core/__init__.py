"""The pure core: records, settings, policy, the tick plan, queue, codecs, parsers.

Nothing here imports trio, docker, redis, quart or any other I/O library, and
nothing reads a clock: time comes in as an argument. `tests/unit/test_layers.py`
holds that rule (and the absence of import cycles) against the code.
"""
