# One image for the API and the worker; the command picks the role.
#   docker build -t systeme-flow .
#   docker run -p 8000:8000 -v systeme-flow-data:/srv/var --env-file .env systeme-flow     (API, embedded, SQLite)
#   docker run --env-file .env systeme-flow systeme-flow worker                             (worker, needs REDIS_URL)
# Without a registry, build on another base: --build-arg BASE_IMAGE=<an image with python3.11 and pip>.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package, built into a wheel in a stage of its own: its build folder and the copy of the source it was built
# from stay in this stage, and the image gets the installed package only.
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM base
WORKDIR /srv

# Dependencies first, at the versions pinned in constraints.txt: this layer is rebuilt only when they change. They
# are read from pyproject.toml's list, not by installing the package, so no README.md or source is needed here and
# editing them does not rebuild it.
COPY pyproject.toml constraints.txt /tmp/deps/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/deps/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/deps/requirements.txt \
    && pip install -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 flow \
    && mkdir -p /srv/var \
    && chown flow:flow /srv/var
COPY rules.yaml ./rules/

# The rules live in a folder, so that a folder mounted over it sees every edit (a file mount misses replaced files).
ENV RULES_FILE=/srv/rules/rules.yaml
# SQLite's home when DATABASE_URL is unset: a volume, so the data outlives the container.
VOLUME /srv/var

USER flow
EXPOSE 8000
# Role-aware: healthy when this container's API answers /healthz, or when its worker's heartbeat is fresh (alive;
# compose checks the api with `app.health ready`: its database answers too).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "app.health"]

CMD ["systeme-flow", "serve", "--host", "0.0.0.0", "--port", "8000"]
