# LOCAL TEST BUILDS ONLY: a stand-in for the official postgres:16 image, which this machine
# cannot pull (no registry). Debian bookworm's PostgreSQL 15 on the debootstrap base from
# base_image.sh, with the official image's start-up contract: POSTGRES_USER, POSTGRES_DB and
# POSTGRES_PASSWORD create the role and database on the first start; the data lives in
# /var/lib/postgresql/data. docker-compose.scale.yml names the real postgres:16.
ARG BASE=slimgate-local/debian-python:bookworm
FROM ${BASE}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
# hadolint ignore=DL3066
USER postgres
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]
