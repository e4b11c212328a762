# One image for all three processes: auth, loyalty and the gateway (choose with the command).
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt ./
COPY common common
COPY auth_service auth_service
COPY loyalty_service loyalty_service
COPY gateway gateway
COPY protogen protogen
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home /app app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# Migrations are read from the source tree layout next to the packages.
COPY migrations /opt/venv/lib/python3.11/site-packages/migrations
USER app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 50051 50052 8080 9101 9102 9103
CMD ["python", "-m", "gateway"]
