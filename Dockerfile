# turret-stream API and worker image. Use with docker-compose.yml (external Kafka).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY turret_stream ./turret_stream
COPY configs ./configs
RUN pip install --no-cache-dir .
ENV TURRET_DATA_DIR=/data TURRET_HTTP__HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["turret-stream"]
CMD ["up"]
