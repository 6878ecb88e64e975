# Kura in a container, laid out like registry:2's image: port 5000, data in the volume /var/lib/registry, config at
# /etc/docker/registry/config.yml (REGISTRY_* environment overrides apply). Runs as the unprivileged user kura.
#
#   DOCKER_BUILDKIT=1 docker build -t kura .
# Options (see README, Container):
#   --build-arg BASE=IMAGE   another base: any Debian-like image; python3 comes from apt when the base has none
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
#                            behind a proxy that re-signs HTTPS: the CA bundle pip and apt should trust (used in
#                            the build only, never stored in the image)
#   --build-arg KURA_UID=N   the uid (and gid) Kura runs as, e.g. to match the owner of a bind-mounted directory
# No `# syntax=` line on purpose: that would pull a frontend image from Docker Hub; the built-in one has RUN --mount.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG KURA_UID=10001

# A base without Python (e.g. a plain Debian) gets Debian's python3; python:* images already have it.
RUN --mount=type=secret,id=ca \
    set -eu; \
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
      ca=; if [ -s /run/secrets/ca ]; then ca="-o Acquire::https::CAInfo=/run/secrets/ca"; fi; \
      apt-get $ca update -qq; \
      DEBIAN_FRONTEND=noninteractive apt-get $ca install -y -qq --no-install-recommends python3 python3-venv >/dev/null; \
      apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi

# Dependencies before the code, so a code change rebuilds one small layer. The lock pins every package with its
# hashes (scripts/lock makes it), so the image runs exactly what the tests ran.
WORKDIR /opt/kura
COPY requirements.lock ./
RUN --mount=type=secret,id=ca \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca; fi; \
    python3 -m venv /opt/kura/venv; \
    /opt/kura/venv/bin/pip install --no-cache-dir --disable-pip-version-check -q --require-hashes -r requirements.lock
# Kura itself, from a bind mount of the context: the image keeps only the installed package, not the source tree.
# Its build backend (setuptools) came from the lock above, hence no build isolation and no download; `pip check`
# fails the build if pyproject.toml names a dependency the lock lacks (run scripts/lock). The installers (pip,
# setuptools: 23 MB) then leave: nothing runs them in the container.
RUN --mount=type=bind,target=/tmp/src,rw \
    set -eu; \
    /opt/kura/venv/bin/pip install --no-cache-dir --disable-pip-version-check -q --no-deps --no-build-isolation /tmp/src; \
    /opt/kura/venv/bin/pip check --disable-pip-version-check; \
    /opt/kura/venv/bin/python -m pip uninstall -y -q setuptools pip

RUN set -eu; \
    groupadd --gid "$KURA_UID" kura; \
    useradd --uid "$KURA_UID" --gid kura --home-dir /var/lib/registry --no-create-home \
      --shell /usr/sbin/nologin kura; \
    mkdir -p /var/lib/registry; \
    chown kura:kura /var/lib/registry
COPY deploy/config.yml /etc/docker/registry/config.yml
# A named volume starts as a copy of this directory, so it belongs to kura; a bind mount must be chown'ed to KURA_UID.
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENV PATH=/opt/kura/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KURA_HEALTHCHECK_URL=http://127.0.0.1:5000/_kura/v1/live
USER kura

# Alive = the liveness URL answers 200 (it needs no credentials, even with auth on; 503 while a storage health
# check fails). A URL behind auth (/v2/) may be set instead: its 401 counts as alive. Set KURA_HEALTHCHECK_URL
# when the port (REGISTRY_HTTP_ADDR) changes. The standard library is enough, so the image needs no curl; no proxy from the environment applies.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["python3", "-c", "import os, sys, urllib.error, urllib.request as r\nu = os.environ['KURA_HEALTHCHECK_URL']\ntry: r.build_opener(r.ProxyHandler({})).open(u, timeout=4)\nexcept urllib.error.HTTPError as e: sys.exit(e.code != 401)\nexcept OSError as e: sys.exit(f'{u}: {e}')"]
ENTRYPOINT ["kura", "serve"]
CMD ["--config", "/etc/docker/registry/config.yml"]
