# Image of the node for docker-compose.yml (tor and i2pd run in their own containers).
FROM python:3.11-slim-bookworm
WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/aegis-hidden aegis \
    && mkdir -p /var/lib/aegis-hidden && chown aegis /var/lib/aegis-hidden
USER aegis
