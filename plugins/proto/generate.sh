#!/bin/sh
# Regenerates the Go code of the plugin protocol (run through
# `go generate ./plugins/...`): kemplugin.v2, the control protocol plugins
# speak, and kemplugin.v1, kept in plugins/internal/barepb only as the
# benchmarks' bare gRPC reference. It needs protoc (Debian:
# protobuf-compiler) and takes protoc-gen-go and protoc-gen-go-grpc at the
# versions pinned by the tool directives of go.mod (`go tool -n` builds them
# and prints their paths), so the output depends only on go.mod and protoc.
set -eu
cd "$(dirname "$0")"
gen_go=$(go tool -n protoc-gen-go)
gen_grpc=$(go tool -n protoc-gen-go-grpc)
gen() {
	protoc \
		--plugin=protoc-gen-go="$gen_go" \
		--plugin=protoc-gen-go-grpc="$gen_grpc" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		"$@"
}
gen kemplugin/v2/kemplugin.proto
(cd ../internal/barepb && gen kemplugin/v1/kemplugin.proto)
