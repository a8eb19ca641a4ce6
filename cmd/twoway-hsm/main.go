// Command twoway-hsm is the operator's tool for twoway-hsm keys, and the
// plugin binary that servers load to use them.
//
// Usage:
//
//	twoway-hsm <command> [arguments]
//
// Commands:
//
//	demo        run the whole flow through a plugin with each backend installed here
//	keys        create, import, list, show, delete and attest keys
//	key-config  print the OHTTP key configuration of keys
//	request     send one request through an OHTTP gateway
//	gateway     serve Oblivious HTTP with keys in hardware, behind a relay
//	attest      verify the evidence that a key lives in a TPM
//	selftest    round trips through a real plugin process with a key
//	env         start or stop a local SoftHSM token and swtpm
//	plugin      serve keys to a server over the plugin protocol (started by the server, not by hand)
//	version     print the version
//
// Exit status: 0 on success, 1 on failure, 2 on a usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	_ "github.com/twoway-hsm/twoway-hsm/keystore/all" // every key store, chosen by reference scheme
)

// environment is what a command may touch of the outside world, so that
// commands can be tested without a process of their own.
type environment struct {
	stdin          io.Reader
	stdinFd        int // -1 when stdin is not a file (tests)
	stdout, stderr io.Writer
	getenv         func(string) string
}

// commands is the dispatch table, in the order help lists them.
var commands = []command{
	{name: "demo", summary: "run the whole flow through a plugin with each backend installed here", run: runDemo},
	{name: "keys", summary: "create, import, list, show and delete keys on a token, a TPM or in a file", run: runKeys},
	{name: "key-config", summary: "print the OHTTP key configuration (application/ohttp-keys) of keys", run: runKeyConfig},
	{name: "attest", summary: "verify the evidence that a gateway's TPM key lives in a TPM", run: runAttest},
	{name: "request", summary: "send one request through an OHTTP gateway and print the response", run: runRequest},
	{name: "gateway", summary: "serve Oblivious HTTP with keys in hardware, behind a relay", run: runGateway},
	{name: "selftest", summary: "round trips through a real plugin process with a key, with latencies", run: runSelftest},
	{name: "env", summary: "start or stop a local SoftHSM token and swtpm for trying the commands", run: runEnv},
	{name: "plugin", summary: "serve keys to a server over the plugin protocol (started by the server)", run: runPlugin},
	{name: "version", summary: "print the version", run: runVersion},
}

func main() {
	env := &environment{stdin: os.Stdin, stdinFd: int(os.Stdin.Fd()), stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(dispatch(context.Background(), env, os.Args[1:]))
}

// dispatch runs the command named by args[0].
func dispatch(ctx context.Context, env *environment, args []string) int {
	if len(args) == 0 {
		usage(env.stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(env.stdout)
		return exitOK
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(env.stderr, "twoway-hsm: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return exitUsage
	}
	return commands[i].run(ctx, env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: twoway-hsm <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'twoway-hsm <command> -h' for a command's options.")
}
