"""The swarm lab leaves nothing behind: after a SIGKILLed node, after a crashed run, and
after a set-up refused because its subnet is taken.

Each test makes labs of its own (two nodes), so this module runs after `test_lab.py`
has closed its shared lab (one lab at a time: the lab lock).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from tests.fixtures.swarm_lab import (
    BRIDGE,
    FORWARD_RULE,
    LAB_ROOT,
    NETNS_DIR,
    SHIM_SOCKET_DIR,
    SUBNET,
    SwarmLab,
    SwarmLabError,
    lab_pids,
    leftovers,
    process_alive,
    shim_socket,
    subnet_users,
)

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]


def assert_nothing_left(lab_names: list[str]) -> None:
    assert leftovers() == []
    for name in lab_names:
        assert not (NETNS_DIR / name).exists()
        assert not Path(f"/sys/class/net/{name}-veth").exists()
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    rule = subprocess.run(["iptables", "-w", "-C", *FORWARD_RULE], capture_output=True, check=False)
    assert rule.returncode != 0, "the FORWARD ACCEPT rule is still there"
    assert not LAB_ROOT.exists()
    assert subnet_users(SUBNET) == []  # no route to the lab's subnet either


def assert_host_engine_untouched(client: docker.DockerClient, lab: SwarmLab) -> None:
    """Never in the lab's swarm. (Its own swarm state is not compared: other tests on
    this machine may `swarm init` the host engine meanwhile.)"""
    swarm = client.info()["Swarm"]
    assert (swarm.get("Cluster") or {}).get("ID") != lab.cluster_id
    assert swarm.get("NodeID") not in {n.node_id for n in lab.nodes}


def test_teardown_after_a_sigkilled_node_leaves_nothing(
    docker_client: docker.DockerClient, demo_image: str, swarm_report: Callable[[str, float], None]
) -> None:
    had_netns_dir = NETNS_DIR.exists()
    lab = SwarmLab(2, host=docker_client, image=demo_image)
    try:
        lab.start()
        worker = lab.nodes[1]
        container = worker.client.containers.run(lab.image_id, detach=True, init=True)
        container.reload()
        orphan = container.attrs["State"]["Pid"]
        worker.kill()
        assert process_alive(orphan), "a SIGKILLed engine leaves its container running"
        pids = lab_pids()  # dockerd and containerd of node 1, the orphan, its shim
        shims = {s for s in map(shim_socket, pids) if s is not None}
        assert orphan in pids and shims and all(s.parent == SHIM_SOCKET_DIR for s in shims)
        assert all(s.exists() for s in shims)
        assert {lab.manager.pid} <= pids
    finally:
        lab.close()
    swarm_report("teardown of 2 nodes after a SIGKILLed one", lab.timings["teardown"])
    assert not any(process_alive(pid) for pid in pids)
    assert not any(s.exists() for s in shims)
    assert_nothing_left(lab.names)
    assert_host_engine_untouched(docker_client, lab)
    assert NETNS_DIR.exists() == had_netns_dir  # `ip netns add` made it: undone


CRASHING_RUN = """
import json, os, signal, sys
from tests.fixtures.swarm_lab import SwarmLab
lab = SwarmLab(2, image=sys.argv[1]).start()
container = lab.nodes[1].client.containers.run(lab.image_id, detach=True, init=True)
container.reload()
pids = [node.pid for node in lab.nodes] + [container.attrs["State"]["Pid"]]
print(json.dumps(pids), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crashed_runs_leftovers_are_swept_before_the_next_set_up(
    docker_client: docker.DockerClient, demo_image: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, demo_image],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    crashed_pids = json.loads(crashed.stdout)  # its two dockerd and a container
    left = leftovers()
    assert any(item.startswith("netns dalab") for item in left), left
    assert f"link {BRIDGE}" in left and any(item.startswith("iptables") for item in left), left
    assert all(map(process_alive, crashed_pids)), "the crash left its engines and container up"

    lab = SwarmLab(2, host=docker_client, image=demo_image)
    try:
        lab.start()
        assert {f"process {pid}" for pid in crashed_pids} <= set(lab.swept)
        assert {"netns dalab1", "netns dalab2", f"link {BRIDGE}", "iptables rule"} <= set(lab.swept)
        assert not any(process_alive(pid) for pid in crashed_pids)
        assert lab.node_states() == {"dalab1": "ready", "dalab2": "ready"}
    finally:
        lab.close()
    assert_nothing_left(lab.names)
    assert_host_engine_untouched(docker_client, lab)


def test_a_taken_subnet_is_refused_with_the_device_named(
    docker_client: docker.DockerClient, demo_image: str
) -> None:
    probe = "daprobe0"  # not a lab name: the sweep must leave it alone
    subprocess.run(["ip", "link", "add", probe, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.231.0.200/24", "dev", probe], check=True)
        subprocess.run(["ip", "link", "set", probe, "up"], check=True)
        begin = time.monotonic()
        with pytest.raises(SwarmLabError, match=rf"10\.231\.0\.0/24 is already used .*dev {probe}"):
            SwarmLab(1, host=docker_client, image=demo_image).start()
        assert time.monotonic() - begin < 30
        assert Path(f"/sys/class/net/{probe}").exists()
    finally:
        subprocess.run(["ip", "link", "del", probe], check=True)
    assert_nothing_left([])
