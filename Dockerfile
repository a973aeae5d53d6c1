# Cival API image. Build: docker build -t cival .   Run: see docker-compose.yml.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt

RUN groupadd --system cival && useradd --system --gid cival --home /app cival \
    && mkdir -p /app/data && chown cival:cival /app/data

COPY --chown=cival:cival . .

USER cival

ENV HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/app/data \
    LOG_FORMAT=json

EXPOSE 8000
VOLUME ["/app/data"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"

CMD ["python", "main_consolidated.py"]
