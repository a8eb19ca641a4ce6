package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressDelay is how long a run goes before its progress bar appears:
// quick runs print nothing.
const progressDelay = time.Second

// progress draws a progress bar on a terminal (stderr, never stdout) for a
// run that takes more than progressDelay. A nil *progress does nothing, so
// callers need not check whether there is a terminal.
type progress struct {
	w     io.Writer
	label string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	drawn bool // owned by the drawing goroutine until finish
}

// startProgress starts a progress bar for total steps on w, or returns nil
// when w is not a terminal.
func startProgress(w io.Writer, label string, total int) *progress {
	if !isTerminal(w) || total <= 0 {
		return nil
	}
	p := &progress{w: w, label: label, total: int64(total), start: time.Now(), stop: make(chan struct{})}
	p.wg.Add(1)
	go p.loop()
	return p
}

// add records n more steps done.
func (p *progress) add(n int) {
	if p != nil {
		p.done.Add(int64(n))
	}
}

func (p *progress) loop() {
	defer p.wg.Done()
	delay := time.NewTimer(progressDelay)
	defer delay.Stop()
	select {
	case <-p.stop:
		return
	case <-delay.C:
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		p.draw()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// barWidth is the number of cells of the bar.
const barWidth = 30

func (p *progress) draw() {
	done := min(p.done.Load(), p.total)
	filled := int(done * barWidth / p.total)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	if filled > 0 && filled < barWidth {
		bar = bar[:filled-1] + ">" + bar[filled:]
	}
	fmt.Fprintf(p.w, "\r%s [%s] %d/%d  %s ", p.label, bar, done, p.total, time.Since(p.start).Round(100*time.Millisecond))
	p.drawn = true
}

// finish stops the bar and erases it, leaving the terminal as it was.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
