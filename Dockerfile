# Kura in a container, laid out like registry:2: port 5000, data in /var/lib/registry,
# config at /etc/docker/registry/config.yml (REGISTRY_* environment overrides apply).
FROM python:3.11-slim
WORKDIR /opt/kura
COPY pyproject.toml README.md ./
COPY app ./app
COPY storage ./storage
RUN pip install --no-cache-dir . && rm -rf /root/.cache
COPY deploy/config.yml /etc/docker/registry/config.yml
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["kura", "serve"]
CMD ["--config", "/etc/docker/registry/config.yml"]
