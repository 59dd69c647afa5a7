# The service's image. One image, three commands: `serve` (the default: the HTTP API under gunicorn),
# `worker` and `scheduler`; any other `email-service` command works too (`keys create NAME`, `cleanup`).
# docker-compose.yml runs it behind nginx with PostgreSQL, Redis and Mailpit; see docs/deploy.md.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change, not
# when the source does. The dev extras (pytest, ruff, mypy...) are never installed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > requirements.txt \
    && pip wheel --wheel-dir /wheels/deps --requirement requirements.txt
COPY README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels/app .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/email-service
# A user of its own. /run/email-service holds the API's unix socket: a named volume mounted there
# starts with this ownership, so the API can create its socket and nginx can reach it.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/email-service email-service \
    && install -d -o email-service -g email-service -m 0755 /run/email-service /var/lib/email-service
COPY --from=builder /wheels/deps /wheels/deps
RUN pip install --no-index --find-links=/wheels/deps /wheels/deps/*.whl && rm -rf /wheels
COPY --from=builder /wheels/app /wheels/app
RUN pip install --no-index --no-deps /wheels/app/*.whl && rm -rf /wheels
USER email-service
WORKDIR /var/lib/email-service
EXPOSE 8000
# For the default command; docker-compose.yml checks the API on its unix socket instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["email-service"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
