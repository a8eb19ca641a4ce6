package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/plugins"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &environment{stdin: strings.NewReader(""), stdinFd: -1, stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }}
	code := dispatch(context.Background(), e, args)
	return code, out.String(), errOut.String()
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout or stderr
	}{
		{nil, exitUsage, "Usage: twoway-hsm"},
		{[]string{"help"}, exitOK, "plugin"},
		{[]string{"nope"}, exitUsage, `unknown command "nope"`},
		{[]string{"version"}, exitOK, "twoway-hsm "},
		{[]string{"version", "extra"}, exitUsage, "unexpected argument"},
		{[]string{"version", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"plugin", "-h"}, exitOK, "pin-source=env:NAME"},
		{[]string{"plugin"}, exitUsage, "no --key given"},
		{[]string{"plugin", "--key", "soft:file=/x", "stray"}, exitUsage, "unexpected argument"},
		{[]string{"plugin", "--key", ""}, exitUsage, "empty key reference"},
	} {
		code, out, errOut := runCmd(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("twoway-hsm %q: exit %d, output %q; want exit %d and %q", tc.args, code, out+errOut, tc.code, tc.want)
		}
	}
}

// TestPluginRefusesToRunByHand: run by hand (no magic cookie), the plugin
// says what it is for and fails, with nothing on stdout.
func TestPluginRefusesToRunByHand(t *testing.T) {
	if plugins.StartedByHost() {
		t.Skip("the test itself runs under a plugin host")
	}
	code, out, errOut := runCmd(t, nil, "plugin", "--key", "soft:file=/x")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "not run by hand") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout and why", code, out, errOut)
	}
}
