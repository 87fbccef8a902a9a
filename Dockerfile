# syntax=docker/dockerfile:1
# The ViewBait AI service. Build: docker build -t viewbait-ai-service .
# Serve:   docker run -p 8000:8000 -e DATABASE_URL=… -e REDIS_URL=… viewbait-ai-service
# Migrate: docker run --rm -e DATABASE_URL=… viewbait-ai-service python -m service migrate

# -- build: install the project and its dependencies into a virtualenv -------------------
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so that code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && pip install -r requirements.txt
COPY checkpoints ./checkpoints
COPY ratelimit ./ratelimit
COPY service ./service
RUN pip install --no-deps .

# -- runtime: the virtualenv only, as an unprivileged user ------------------------------
FROM python:3.12-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data
RUN groupadd --system --gid 10001 viewbait \
 && useradd --system --uid 10001 --gid viewbait --home-dir /app --shell /usr/sbin/nologin viewbait \
 && mkdir -p /app /data \
 && chown viewbait:viewbait /app /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER viewbait
# DATA_DIR: the SQLite file when DATABASE_URL is unset, local objects (STORAGE_BACKEND=local)
# and the dev JWT secret; instances that share it share all three.
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (/readyz also checks the database and Redis); no curl in a slim image.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# Migrations are a separate command (python -m service migrate), run once per deploy.
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0", "--port", "8000"]
