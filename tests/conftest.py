"""Shared fixtures live in tests/fixtures/, one plugin module per real component."""
pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.docker",
    "tests.fixtures.swarm_lab",
    "tests.fixtures.host_swarm",
    "tests.fixtures.haproxy",
]
