# One image for the API and the worker; the command picks the role.
#   docker build -t systeme-flow .
#   docker run -p 8000:8000 -v systeme-flow-data:/srv/var --env-file .env systeme-flow     (API, embedded, SQLite)
#   docker run --env-file .env systeme-flow systeme-flow worker                             (worker, needs REDIS_URL)
# Without a registry, build on another base: --build-arg BASE_IMAGE=<an image with python3.11 and pip>.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# Dependencies first, at the versions pinned in constraints.txt: this layer is rebuilt only when they change. The
# README (the package's long description) comes with the code, so editing it does not rebuild this layer.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p app workers && touch README.md app/__init__.py workers/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y systeme-flow

COPY README.md ./
COPY app ./app
COPY workers ./workers
COPY rules.yaml ./rules/
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 flow \
    && mkdir -p /srv/var \
    && chown flow:flow /srv/var

# The rules live in a folder, so that a folder mounted over it sees every edit (a file mount misses replaced files).
ENV RULES_FILE=/srv/rules/rules.yaml
# SQLite's home when DATABASE_URL is unset: a volume, so the data outlives the container.
VOLUME /srv/var

USER flow
EXPOSE 8000
# Role-aware: healthy when this container's API answers /healthz, or when its worker's heartbeat is fresh.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "app.health"]

CMD ["systeme-flow", "serve", "--host", "0.0.0.0", "--port", "8000"]
