package main

import (
	"context"
	"flag"
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

func runVersion(_ context.Context, env *environment, args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: twoway-hsm version [--json]")
		fmt.Fprintln(w, "\nPrints the version of twoway-hsm, of Go, and the platform.")
		fmt.Fprintln(w, "\nExamples:\n  twoway-hsm version\n  twoway-hsm version --json")
	}
	fs.Usage = func() {} // printed below: -h to stdout, errors to stderr
	asJSON := fs.Bool("json", false, "print the version as a JSON document")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			usage(env.stdout)
		} else {
			usage(env.stderr)
		}
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "twoway-hsm version: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *asJSON {
		v := struct {
			Version string `json:"version"`
			Go      string `json:"go"`
			OS      string `json:"os"`
			Arch    string `json:"arch"`
			Module  string `json:"module"`
		}{Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH, "github.com/twoway-hsm/twoway-hsm"}
		if err := writeJSON(env.stdout, v); err != nil {
			fmt.Fprintf(env.stderr, "twoway-hsm version: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	fmt.Fprintf(env.stdout, "twoway-hsm %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// flagExit is the exit status for an error from flag.FlagSet.Parse: 0
// after -h, 2 otherwise (the flag package has printed what was wrong).
func flagExit(err error) int {
	if err == flag.ErrHelp {
		return exitOK
	}
	return exitUsage
}
