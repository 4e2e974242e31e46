# One image recipe for every service:  docker build --build-arg SERVICE=planner -t lastmile/planner .
# Multi-stage: the build stage makes a virtual environment with the service and lastmile-common (pinned by
# constraints.txt); the runtime stage is python:slim with that environment only, run as an unprivileged user,
# with a health check on /healthz. Kubernetes runs it with a read-only root filesystem (writable: /tmp and the
# notifier's /var/lib/lastmile/outbox).
ARG PYTHON=3.11-slim-bookworm

FROM python:${PYTHON} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "pass --build-arg SERVICE=order-intake|planner|tracker|notifier" >&2; exit 1; }
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY libs/common libs/common
COPY services/${SERVICE} services/${SERVICE}
RUN python -m venv /venv \
 && /venv/bin/pip install -c constraints.txt ./libs/common ./services/${SERVICE}
# The service's default port, read from its settings class, for the health check when LASTMILE_PORT is unset.
RUN /venv/bin/python -c "import importlib, os; from lastmile.common.settings import CommonSettings as C; \
m = importlib.import_module('lastmile.' + os.environ['SERVICE'].replace('-', '_') + '.settings'); \
print(next(v for v in vars(m).values() if isinstance(v, type) and issubclass(v, C) and v is not C).model_fields['port'].default)" \
  > /venv/lastmile-port

FROM python:${PYTHON} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="lastmile-${SERVICE}"
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LASTMILE_HOST=0.0.0.0 \
    LASTMILE_LOG_FORMAT=json \
    SERVICE=${SERVICE}
RUN groupadd --gid 10001 lastmile \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin lastmile \
 && install -d -o 10001 -g 10001 /var/lib/lastmile /var/lib/lastmile/outbox
COPY --from=build /venv /venv
WORKDIR /var/lib/lastmile
USER 10001:10001
EXPOSE 8001 8002 8003 8004 5055
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('LASTMILE_PORT') or open('/venv/lastmile-port').read().strip(); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
CMD ["sh", "-c", "exec lastmile-${SERVICE}"]
