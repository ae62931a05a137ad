# One image per role, each installed from its lock file (requirements/<role>.txt: every package pinned with its
# hashes, so a rebuild installs the same bytes; scripts/lock refreshes them). Targets:
#   worker     (default) Celery worker, beat and the demo emulator: the [worker] extra
#   dashboard  Flower: the [worker,dashboard] extras (Flower loads the worker's app and tasks)
#   intake     the HTTP intake, `genesys-closer serve`: the [intake] extra
# docker-compose.yml builds each service from its target.

FROM python:3.11-slim AS build
# The wheel, built with the locked setuptools; only the wheel leaves this stage.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/build.txt requirements/build.txt
RUN pip install --require-hashes --no-deps -r requirements/build.txt
# The whole context (.dockerignore keeps out caches, venvs, tests and docs): a folder mapped into the package
# later (pyproject.toml's package-dir) needs no line here.
COPY . .
RUN pip wheel --no-deps --no-build-isolation -w /dist .

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --create-home closer
# Run from the user's home, not from the sources: nothing in the working directory shadows the installed package.
WORKDIR /home/closer

FROM base AS intake
COPY requirements/intake.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/genesys_closer-*.whl && rm -rf /tmp/dist /tmp/requirements.txt
USER closer
CMD ["genesys-closer", "serve", "--host", "0.0.0.0", "--port", "8080"]

FROM base AS dashboard
COPY requirements/dashboard.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/genesys_closer-*.whl && rm -rf /tmp/dist /tmp/requirements.txt
USER closer
CMD ["celery", "-A", "genesys_closer.worker.app", "flower", "--address=0.0.0.0", "--port=5555", "--persistent=False"]

FROM base AS worker
COPY requirements/worker.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/genesys_closer-*.whl && rm -rf /tmp/dist /tmp/requirements.txt
USER closer
CMD ["celery", "-A", "genesys_closer.worker.app", "worker", "--loglevel=INFO"]
