"""No secret in what the agent says: run it with ``REDIS_URL=redis://user:pw@…`` and
an API token (then with a wrong password, then with its embedded Redis), make it
fail in the ways it reports (Redis away, bad requests), and scan its stderr, its
ledger, ``check-config`` and every API answer for the password, the token and the
embedded Redis' password."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from urllib.parse import quote

from . import report
from .harness import Pool, losses, poll, settle


def answers(agent, name: str) -> list[str]:
    """Every answer the API gives: each GET of the document (the container path
    filled in), each mutation with a wrong token, a bad body and the right token."""
    doc = agent.api("/openapi.json").json()
    out = [agent.api("/openapi.json").text, agent.api("/static/app.js").text]
    for path, item in doc["paths"].items():
        concrete = path.replace("{name}", name)
        for method in item:
            method = method.upper()
            if method == "GET":
                out.append(agent.api(concrete).text)
                out.append(agent.api(concrete + "?limit=x&before=y&kind=%00").text)
            else:
                for headers, body in (({"Authorization": "Bearer wrong"}, {}),
                                      ({"Authorization": f"Bearer {agent.token}"}, {"nope": [1]}),
                                      ({"Authorization": f"Bearer {agent.token}"},
                                       {"AGENT_API_TOKEN": "x", "REDIS_URL": "redis://a:b@c"})):
                    out.append(agent.api(concrete, method, body=body, headers=headers).text)
    out.append(agent.api("/config", "PUT", body={"SCALE_STEP": 1}, token=agent.token).text)
    return out


def ledger(store, app: str) -> list[str]:
    return [str(fields) for _, fields in store.xrange(f"da:{app}:events")]


def leaks(texts: list[str], secret_values: list[str]) -> list[str]:
    return [f"{s[:6]}… in {t[:200]!r}" for t in texts for s in secret_values if s in t]


def check_config(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "agent.interfaces.cli", "check-config",
                           "--env-file", os.devnull], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout + done.stderr


def test_no_secret_in_stderr_ledger_or_answers(private_redis, docker_app, docker_client, agents):
    password = "pw-" + secrets.token_hex(8)
    wrong = "pw-wrong-" + secrets.token_hex(8)
    token = "tok-" + secrets.token_hex(12)
    def add_user() -> None:  # ACL users live in memory: again after each restart
        with private_redis.client() as client:
            client.execute_command("ACL", "SETUSER", "fault-user", "on", f">{password}", "~*",
                                   "&*", "+@all")

    add_user()
    url = f"redis://fault-user:{quote(password)}@127.0.0.1:{private_redis.port}/0"
    env = {**docker_app.env(), "REDIS_URL": url, "AGENT_API_TOKEN": token,
           "DEFAULT_CONTAINER": "1", "MAX_CONTAINERS": "2"}
    agent = agents(env, "with-url")
    agent.start()
    agent.wait_ready()
    pool = Pool(docker_client, docker_app.app_identifier)
    poll(lambda: not losses(pool, agent, desired=1), timeout=60, message=f"settled\n{agent.tail()}")
    name = sorted(pool.read().running)[0]
    texts = answers(agent, name)
    private_redis.stop()  # Redis away: the outage reported in the log and the ledger
    poll(lambda: agent.lines("Redis unreachable"), timeout=20, message="the outage logged")
    texts += [agent.api("/readyz").text, agent.api("/healthz").text]
    private_redis.start()
    add_user()
    poll(lambda: agent.lines("Redis reachable again"), timeout=30, message="the recovery logged")
    poll(lambda: agent.events("store_outage"), timeout=20, message="the outage in the ledger")
    agent.stop()
    texts += [agent.output(), check_config(env)]

    wrong_agent = agents({**env, "REDIS_URL": url.replace(quote(password), quote(wrong))}, "wrong")
    wrong_agent.start()
    wrong_agent.wait_ready()
    poll(lambda: wrong_agent.lines("Redis unreachable"), timeout=20, message="the refusal logged")
    texts += [wrong_agent.api("/readyz").text, wrong_agent.api("/healthz").text]
    wrong_agent.stop()
    with private_redis.client() as admin:
        texts += [wrong_agent.output(), *ledger(admin, docker_app.app_identifier)]

    embedded = agents({**docker_app.env(), "AGENT_API_TOKEN": token, "DEFAULT_CONTAINER": "1",
                       "MAX_CONTAINERS": "2"}, "embedded")
    embedded.start()
    embedded.wait_ready()
    settle(pool, embedded, desired=1, what="settled (embedded)")
    embedded_password = (embedded.data_dir / "redis" / "redis-password").read_text().strip()
    texts += answers(embedded, sorted(pool.read().running)[0])
    texts += [str(e) for e in embedded.events()]
    embedded.stop()
    texts += [embedded.output(), check_config({**docker_app.env(), "AGENT_API_TOKEN": token,
                                              "DATA_DIR": str(embedded.data_dir)})]

    found = leaks(texts, [password, wrong, token, embedded_password])
    assert not found, found
    assert "fault-user:***@" in agent.output()  # the URL is shown, its password masked
    report.record(
        "secrets in output (REDIS_URL with a password, API token, embedded Redis password)",
        lost=[f"leaked: {f}" for f in found], recovery="—",
        detail=f"{len(texts)} texts scanned (stderr of 3 runs incl. a Redis outage and a wrong "
        "password, the ledger, check-config, every API answer incl. errors): no secret",
    )
