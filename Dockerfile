# deployment-agent's own image. Multi-stage: compile the Cython kernel into a wheel,
# then install that wheel into a slim runtime without a compiler.
#
#   docker build -t deployment-agent .
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock --pid=host \
#     -e DOCKER_IMAGE=myapp -e TARGET_PORT=8080 -e REDIS_URL=redis://redis:6379/0 \
#     -e BIND_HOST=0.0.0.0 -p 127.0.0.1:2550:2550 deployment-agent
#
# --pid=host lets the sampler read the workers' cgroup and /proc files; without it
# the agent falls back to the engine's stats API (slower, ~1 s per sweep).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY _scoring ./_scoring
COPY agent ./agent
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# redis-server: the embedded default when no REDIS_URL is given.
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
ENV DATA_DIR=/var/lib/deployment-agent
VOLUME /var/lib/deployment-agent
EXPOSE 2550 2547
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HOST_PORT_HTTP_DEPLOYMENT_AGENT', '2550'), timeout=2).status == 200 else 1)"
ENTRYPOINT ["deployment-agent"]
CMD ["run"]
