# deployment-agent's own image. Two stages: a venv with the agent (its Cython kernel
# compiled into a wheel), then that venv copied into a runtime without a compiler.
#
#   docker build -t deployment-agent .                     # FROM python:3.11-slim
#   scripts/build-image                                    # no registry: local base
#
# BASE_IMAGE is any Debian-like image with Python 3.11 and venv; redis-server is
# installed unless it has it. WHEELHOUSE names a folder of the build context that
# holds the agent's wheel and its dependencies, built beforehand: then nothing is
# compiled or downloaded here. scripts/build-image uses both (its local base image
# is made from Debian's packages by scripts/build-base-image).
#
# Running it beside its workers, on the host that runs them:
#
#   docker run -d --name deployment-agent --network host --pid host --cgroupns host \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
#     -e DOCKER_IMAGE=myapp -e TARGET_PORT=8080 deployment-agent
#
# --network host: the workers publish their ports on the host's 127.0.0.1, which
# the agent probes, and the API then listens on the host's 127.0.0.1:2550 (BIND_HOST
# stays 127.0.0.1). --pid host and the host's cgroup mount let the sampler read the
# workers' cgroup and /proc files (--cgroupns host matters on cgroup v2); without
# them it falls back to the engine's stats API (~1 s per sweep). No REDIS_URL: the
# embedded redis-server keeps its data in the /var/lib/deployment-agent volume.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Marks this stage's leftover images, which scripts/build-image prunes later.
LABEL io.deployment-agent.stage=build
ARG WHEELHOUSE=
RUN if [ -z "$WHEELHOUSE" ]; then \
      apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# The context is the source only (.dockerignore lists what may enter).
COPY . .
RUN set -eu; \
    if [ -n "$WHEELHOUSE" ]; then wheels="$WHEELHOUSE"; \
    else pip wheel --no-cache-dir --wheel-dir /tmp/wheels .; wheels=/tmp/wheels; fi; \
    python3 -m venv /opt/deployment-agent; \
    /opt/deployment-agent/bin/pip install --no-cache-dir --no-index --find-links "$wheels" \
      deployment-agent; \
    /opt/deployment-agent/bin/pip uninstall -y -q pip setuptools; \
    rm -rf /tmp/wheels

FROM ${BASE_IMAGE}
# redis-server: the embedded default when no REDIS_URL is given.
RUN command -v redis-server >/dev/null || { apt-get update \
      && apt-get install -y --no-install-recommends redis-server \
      && rm -rf /var/lib/apt/lists/*; }
COPY --from=build /opt/deployment-agent /opt/deployment-agent
ENV PATH=/opt/deployment-agent/bin:$PATH DATA_DIR=/var/lib/deployment-agent
VOLUME /var/lib/deployment-agent
EXPOSE 2550 2547
# The check reads the address and port from the environment (BIND_HOST, a
# wildcard meaning loopback; HOST_PORT_HTTP_DEPLOYMENT_AGENT), as the agent does.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD python -c "import os, urllib.request as u; h = os.environ.get('BIND_HOST') or '127.0.0.1'; h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); u.urlopen('http://%s:%s/healthz' % ('[%s]' % h if ':' in h else h, os.environ.get('HOST_PORT_HTTP_DEPLOYMENT_AGENT') or '2550'), timeout=2)"
ENTRYPOINT ["deployment-agent"]
CMD ["run"]
