# ml-service image: docker build -t ml-service .   (docker-compose.yml builds and runs it.)
# Stage 1 installs the pinned dependencies into a virtualenv, in a layer of their own that is
# rebuilt only when requirements.txt changes; stage 2 copies that virtualenv and the code.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIND=0.0.0.0:5000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/ml-service-metrics
RUN groupadd --system --gid 10001 ml \
    && useradd --system --uid 10001 --gid ml --home-dir /app --no-create-home --shell /usr/sbin/nologin ml
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY ml_service/ ml_service/
COPY database/ database/
COPY services/ services/
COPY settings.py settings.py
USER 10001:10001
EXPOSE 5000
# Python's urllib instead of curl, which the slim image does not have.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "ml_service.healthcheck"]
CMD ["gunicorn", "-c", "ml_service/gunicorn.conf.py"]
