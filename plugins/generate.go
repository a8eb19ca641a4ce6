package plugins

// The protocol's Go code in proto/kemplugin/v1 is generated from
// kemplugin.proto by protoc with protoc-gen-go and protoc-gen-go-grpc at the
// versions go.mod pins as tools (go get -tool).
//go:generate sh proto/generate.sh
