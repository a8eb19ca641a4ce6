package main

import (
	"context"
	"fmt"
)

// runDemo is not built yet.
func runDemo(_ context.Context, env *environment, _ []string) int {
	fmt.Fprintln(env.stderr, "twoway-hsm: not implemented yet")
	return exitFailure
}
