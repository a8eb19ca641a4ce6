package main

import (
	"context"
	"fmt"
)

// runSelftest is not built yet.
func runSelftest(_ context.Context, env *environment, _ []string) int {
	fmt.Fprintln(env.stderr, "twoway-hsm: not implemented yet")
	return exitFailure
}
