# batch-trigger service image: gunicorn serving service.wsgi:app as a non-root user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY lambda_trigger ./lambda_trigger
# DL3013: this installs the project itself; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --prefix=/install ".[postgres]"

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    LEDGER_URL=sqlite:////var/lib/batch-trigger/ledger.db \
    ARTEFACT_DIR=/var/lib/batch-trigger/artefacts \
    RUN_DIR=/tmp/batch-trigger
# A system user without a home: nothing (gunicorn's control socket included) writes under $HOME.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && install -d -o app -g app /var/lib/batch-trigger
COPY --from=build /install /usr/local
USER 10001:10001
WORKDIR /var/lib/batch-trigger
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["python", "-m", "service.healthcheck"]
# gunicorn is PID 1: it reaps the orphaned batch supervisors that the runner detaches.
CMD ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
