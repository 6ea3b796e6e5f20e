FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events ./events
COPY compliance ./compliance
COPY detectors ./detectors
COPY streams ./streams
COPY evidence ./evidence
RUN pip install --no-cache-dir .
RUN useradd --system --home /data stormwatch && mkdir -p /data && chown stormwatch /data
USER stormwatch
# 0.0.0.0 inside the container only: docker-compose.yml publishes the port on the host's 127.0.0.1, and the
# worker serves only Stormwatch's routes (tokens on /api; Faust's own pages are off).
ENV STORMWATCH_DATA_DIR=/data STORMWATCH_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["stormwatch"]
CMD ["worker"]
