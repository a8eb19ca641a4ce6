# twoway-hsm for development in containers: the twoway-hsm binary with
# SoftHSM2 and swtpm beside it. docker-compose.yml builds it and runs the
# demo, a swtpm and a SoftHSM token from it.
#
#   docker build -t twoway-hsm:dev .
#   docker run --rm twoway-hsm:dev            # twoway-hsm demo
#   docker run --rm twoway-hsm:dev selftest -h

# The build stage is the Debian release of the runtime stage (bookworm):
# the binary uses cgo (PKCS#11 modules are C libraries) and so links
# against the C library it is built with.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -o /out/twoway-hsm ./cmd/twoway-hsm

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      softhsm2 swtpm swtpm-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# An unprivileged user owns the state directories; named volumes mounted
# there start out with this ownership.
RUN useradd --system --user-group --home-dir /var/lib/twoway --create-home --shell /usr/sbin/nologin twoway \
 && mkdir -p /var/lib/swtpm /var/lib/softhsm-env \
 && chown twoway:twoway /var/lib/swtpm /var/lib/softhsm-env \
 && chmod 0700 /var/lib/swtpm /var/lib/softhsm-env
COPY --from=build /out/twoway-hsm /usr/local/bin/twoway-hsm
COPY deploy/softhsm-init.sh /usr/local/lib/twoway-hsm/softhsm-init.sh
USER twoway
WORKDIR /var/lib/twoway
ENTRYPOINT ["twoway-hsm"]
CMD ["demo"]
