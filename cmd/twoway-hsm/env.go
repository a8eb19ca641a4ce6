package main

import (
	"context"
	"fmt"
)

// runEnv is not built yet.
func runEnv(_ context.Context, env *environment, _ []string) int {
	fmt.Fprintln(env.stderr, "twoway-hsm: not implemented yet")
	return exitFailure
}
