# The perfspec image: the CLI, the flows and their deployments, for a Prefect worker (process worker in
# docker-compose.yml, or the jobs of a Kubernetes work pool: deployments/kubernetes/base-job-template.json).
#   docker build -t perfspec:latest .
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock README.md hatch_build.py ./
COPY perfspec perfspec
COPY tasks tasks
COPY flows flows
COPY deployments deployments
COPY sample sample
# a C compiler only while installing: hatch_build.py compiles perfspec clean's native scanner
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && uv sync --frozen --no-dev --compile-bytecode \
    && .venv/bin/python -m compileall -q perfspec tasks flows > /dev/null \
    && .venv/bin/python -c "from perfspec.audit import native; assert native.available(), 'scanner not built'" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENV PATH=/app/.venv/bin:$PATH \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true
CMD ["perfspec", "--help"]
