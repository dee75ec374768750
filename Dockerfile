# syntax=docker/dockerfile:1
# mmdx service image. CPU torch by default; for CUDA: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# Run: docker run -v $PWD/configs:/app/configs:ro -v mmdx-var:/app/var -p 8000:8000 -p 11112:11112 mmdx
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md constraints.txt ./
COPY core ./core
COPY store ./store
COPY ingest ./ingest
COPY ecg ./ecg
COPY models ./models
COPY reports ./reports
COPY pacs_bridge ./pacs_bridge
COPY app ./app
# the project itself is pinned by this checkout; its dependencies by constraints.txt (make lock)
RUN pip install -c constraints.txt ".[ml]"
# constrained decoding of model drafts (xgrammar) without triton, a GPU-only ~1 GB dependency it declares
RUN pip install -c constraints.txt --no-deps xgrammar apache-tvm-ffi && python -c "import xgrammar"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MMDX_CONFIG=/app/configs/default.yaml
RUN groupadd --system --gid 10001 mmdx && useradd --system --uid 10001 --gid mmdx --home-dir /app --shell /usr/sbin/nologin mmdx
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=mmdx:mmdx configs ./configs
RUN mkdir -p /app/var && chown mmdx:mmdx /app/var
USER 10001
VOLUME ["/app/var"]
EXPOSE 8000 11112
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["mmdx", "serve", "--host", "0.0.0.0", "--port", "8000"]
