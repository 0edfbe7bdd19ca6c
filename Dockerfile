# chatsite in production: the recipe the test suite runs (tests/e2e/test_production.py), in an
# image. Nothing here exists only in Docker: the same Debian nginx, the same `make` install step,
# the same supervisor (scripts/run_prod.py, what `make run-prod` runs) and nginx template.
#
#   docker compose up --build        # with PostgreSQL and Redis: see docker-compose.yml
FROM python:3.11-slim-bookworm

# nginx is the reverse proxy the supervisor starts in front of the workers; make is the front door.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . .
RUN make .venv/.installed PYTHON=python3 \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin chatsite \
    && mkdir /data && chown chatsite /data

# The recipe runs as any user: nginx's pid and temporary files go to $CHATSITE_DATA_DIR/run.
USER chatsite
ENV CHATSITE_DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8000 \
    PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# `make run-prod` runs exactly this; started directly so that SIGTERM from `docker stop` reaches
# the supervisor, which drains the workers (make would not pass the signal on).
CMD [".venv/bin/python", "scripts/run_prod.py"]
