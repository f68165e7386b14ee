# The perfspec image: the CLI, the flows and their deployments, for a Prefect worker (process worker in
# docker-compose.yml, or the jobs of a Kubernetes work pool: deployments/kubernetes/base-job-template.json).
#   docker build -t perfspec:latest .
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock README.md ./
COPY perfspec perfspec
COPY tasks tasks
COPY flows flows
COPY deployments deployments
COPY sample sample
RUN uv sync --frozen --no-dev
ENV PATH=/app/.venv/bin:$PATH \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true
CMD ["perfspec", "--help"]
