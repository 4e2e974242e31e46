# One image recipe for every service: docker build --build-arg SERVICE=planner -t lastmile/planner .
ARG PYTHON=3.11-slim-bookworm

FROM python:${PYTHON} AS build
ARG SERVICE
WORKDIR /src
COPY constraints.txt ./
COPY libs/common libs/common
COPY services/${SERVICE} services/${SERVICE}
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir -c constraints.txt ./libs/common ./services/${SERVICE}

FROM python:${PYTHON}
ARG SERVICE
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 LASTMILE_HOST=0.0.0.0 LASTMILE_LOG_FORMAT=json SERVICE=${SERVICE}
COPY --from=build /venv /venv
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin lastmile
USER 10001
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"LASTMILE_PORT\",\"8000\")}/healthz')"
CMD ["sh", "-c", "exec lastmile-${SERVICE}"]
