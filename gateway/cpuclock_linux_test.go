package gateway_test

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time so far (user and system, of all its
// threads, those that exited included) of the process pid, at nanosecond
// resolution: Linux gives every process a CPU clock that any process may
// read with clock_gettime, its id made from the pid as glibc's
// clock_getcpuclockid does (CPUCLOCK_SCHED, the scheduler's runtime).
func processCPU(pid int) (time.Duration, error) {
	const cpuclockSched = 2
	clock := (^int32(pid))<<3 | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// TestProcessCPU: this process's CPU clock read as another process's is
// would be agrees with getrusage around a spin of CPU work.
func TestProcessCPU(t *testing.T) {
	var ru0, ru1 unix.Rusage
	c0, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru0); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
	}
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru1); err != nil {
		t.Fatal(err)
	}
	c1, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ru := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	// The clock's interval holds getrusage's; getrusage is tick-sampled
	// and scaled, so allow a tick of slack.
	if d := c1 - c0; d < 10*time.Millisecond || d+10*time.Millisecond < ru {
		t.Errorf("process CPU clock advanced %v over a spin; getrusage %v", d, ru)
	}
}
