package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=v1.2.3"; otherwise it comes from the build
// information (module version, VCS revision).
var version = ""

// Version returns the version string of this binary.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

const versionUsage = `Usage: twoway-hsm version [--json]

Prints the version of twoway-hsm, of Go, and the platform.

Examples:
  twoway-hsm version
  twoway-hsm version --json
`

func runVersion(_ context.Context, env *environment, args []string) int {
	c := newCmdline(env, "version", versionUsage)
	c.fs.BoolVar(&c.json, "json", false, "print the version as a JSON document")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.fail(usagef("unexpected argument %q", pos[0]))
	}
	v := struct {
		Version string `json:"version"`
		Go      string `json:"go"`
		OS      string `json:"os"`
		Arch    string `json:"arch"`
		Module  string `json:"module"`
	}{Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH, "github.com/twoway-hsm/twoway-hsm"}
	return c.output(v, func(w io.Writer) {
		fmt.Fprintf(w, "twoway-hsm %s (%s, %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
	})
}
