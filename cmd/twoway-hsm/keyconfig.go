package main

import (
	"context"
	"fmt"
)

// runKeyConfig is not built yet.
func runKeyConfig(_ context.Context, env *environment, _ []string) int {
	fmt.Fprintln(env.stderr, "twoway-hsm: not implemented yet")
	return exitFailure
}
