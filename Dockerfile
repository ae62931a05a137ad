FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY producer ./producer
COPY emulator ./emulator
RUN pip install --no-cache-dir . && useradd --system --uid 10001 closer
USER closer
CMD ["celery", "-A", "worker.app", "worker", "--loglevel=INFO"]
