# PostgreSQL for docker/compose.local.yaml, on machines that cannot pull the official
# `postgres` image: Debian's own package on the locally built base (docker/smoke builds it with
# `--network host`, so apt reaches Debian's mirror). It honours the subset of the official
# image's settings the compose file uses: POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE,
# PGDATA, PGPORT.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15=15.* \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY docker/postgres-entrypoint /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
# The package creates the postgres user with an id of its own choosing.
# hadolint ignore=DL3066
USER postgres
VOLUME ["/var/lib/postgresql/data"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
