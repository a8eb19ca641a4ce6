package main

import (
	"context"
	"fmt"
)

// runKeys is not built yet.
func runKeys(_ context.Context, env *environment, _ []string) int {
	fmt.Fprintln(env.stderr, "twoway-hsm: not implemented yet")
	return exitFailure
}
