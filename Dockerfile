# One image for the API and the worker; the command picks the role.
#   docker build -t systeme-flow .
#   docker run -p 8000:8000 systeme-flow                      (API, embedded mode)
#   docker run systeme-flow systeme-flow worker               (worker, needs REDIS_URL)
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p app workers && touch app/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall -y systeme-flow

COPY app ./app
COPY workers ./workers
COPY rules.yaml ./
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 flow \
    && mkdir -p /srv/var \
    && chown flow:flow /srv/var

USER flow
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

CMD ["systeme-flow", "serve", "--host", "0.0.0.0", "--port", "8000"]
