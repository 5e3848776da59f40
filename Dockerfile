# kubeferry image, installed from wheels built on the host (hack/docker-build.sh does all of it).
#
# The build context is a directory holding only wheels/: kubeferry's own wheel, binary wheels of
# its dependencies for the base image's Python, and requirements.txt, the runtime set of uv.lock
# with hashes. Nothing is fetched during the build, and nothing but the locked set is installed:
#
#   pip wheel --no-deps -w ctx/wheels .
#   uv export --locked --no-emit-project --format requirements.txt -o ctx/wheels/requirements.txt
#   pip download --require-hashes -r ctx/wheels/requirements.txt -d ctx/wheels  (+ --platform ...)
#   docker build --network host -f Dockerfile -t kubeferry:dev ctx
#
# BASE_IMAGE is any Debian-like image with python3 and its venv module: python:3.12-slim (python
# in /usr/local/bin) or the local bookworm base (Debian's python3.11 in /usr/bin). Both get a
# venv at /opt/kubeferry, so the rest of the file does not care which it is.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# Lets hack/docker-build.sh prune this stage's dangling images after each build.
LABEL io.kubeferry.stage=build
COPY wheels/ /tmp/wheels/
# Hash-checking mode: every wheel must match a sha256 from uv.lock and be pinned there; kubeferry
# itself goes in without resolving anything, and pip check proves the locked set is complete.
# pip and the setuptools that Python 3.11's venv seeds are not part of the locked set and nothing
# imports them at run time, so they go.
RUN python3 -m venv /opt/kubeferry \
 && /opt/kubeferry/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels \
      --require-hashes -r /tmp/wheels/requirements.txt \
 && /opt/kubeferry/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/kubeferry-*.whl \
 && /opt/kubeferry/bin/pip check \
 && /opt/kubeferry/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/kubeferry/bin/python -c "import proxy, controller, kubeferry" \
 && test -x /opt/kubeferry/bin/kubeferry

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title=kubeferry \
      org.opencontainers.image.description="Kubernetes-aware HTTP (L7) load balancer" \
      org.opencontainers.image.licenses=Apache-2.0
# Only the venv crosses over: the wheels and pip stay in the build stage. The venv's python is a
# symlink into the same base, so both stages must use the same BASE_IMAGE (they do).
COPY --from=build /opt/kubeferry /opt/kubeferry
# A named user without useradd (not every base has it); 65532 is the distroless "nonroot" uid.
RUN echo 'kubeferry:x:65532:65532:kubeferry:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'kubeferry:x:65532:' >> /etc/group
# No bytecode writes at run time: the root filesystem is read-only in the Helm chart.
ENV PATH=/opt/kubeferry/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 3000: proxied traffic; 9000: admin (/healthz, /readyz, /metrics, /backends).
EXPOSE 3000 9000
# kubeferry runs as PID 1 and handles SIGTERM itself (drains in-flight requests, then exits).
ENTRYPOINT ["kubeferry"]
CMD ["controller"]
