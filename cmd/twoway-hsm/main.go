// Command twoway-hsm is the operator's tool for twoway-hsm keys, and the
// plugin binary that servers load to use them.
//
// Usage:
//
//	twoway-hsm <command> [arguments]
//
// Commands:
//
//	plugin    serve keys to a server over the plugin protocol (started by the server, not by hand)
//	version   print the version
//
// Exit status: 0 on success, 1 on failure, 2 on a usage error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
)

// Exit statuses.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command failed
	exitUsage   = 2 // the command line is wrong
)

// command is one subcommand: run gets the arguments after the command's
// name and returns the exit status.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) int
}

// environment is what a command may touch of the outside world, so that
// commands can be tested without a process of their own.
type environment struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// commands is the dispatch table, in the order help lists them.
var commands = []command{
	{name: "plugin", summary: "serve keys to a server over the plugin protocol (started by the server)", run: runPlugin},
	{name: "version", summary: "print the version", run: runVersion},
}

func main() {
	env := &environment{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
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
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'twoway-hsm <command> -h' for a command's options.")
}
