FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY config ./config
COPY worker ./worker
COPY producer ./producer
COPY emulator ./emulator
COPY genesys_closer ./genesys_closer
RUN pip install --no-cache-dir . && useradd --system --uid 10001 closer
USER closer
CMD ["celery", "-A", "genesys_closer.worker.app", "worker", "--loglevel=INFO"]
