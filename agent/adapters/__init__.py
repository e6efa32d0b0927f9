"""Adapters: the real parts behind the core's seams (`agent.core.ports`).

One module per outside thing: the Docker engine, the Redis store, the sampler's
cgroup/proc/stats sources and probes, the embedded redis-server and the demo
worker image. Library errors are translated here, once, into `agent.core.errors`.
"""
