package gateway

import (
	"math"
	"sync"
	"time"
)

// Limiter is a token bucket: rate tokens a second, at most burst at once.
// It is safe for concurrent use.
type Limiter struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// NewLimiter returns a Limiter that allows rate events a second on
// average and burst at once; it starts full. A rate or burst that is not
// positive (or not finite) is taken as the defaults' (DefaultEvidenceRate,
// DefaultEvidenceBurst).
func NewLimiter(rate float64, burst int) *Limiter {
	if !(rate > 0) || math.IsInf(rate, 0) {
		rate = DefaultEvidenceRate
	}
	if burst < 1 {
		burst = DefaultEvidenceBurst
	}
	return &Limiter{rate: rate, burst: float64(burst), tokens: float64(burst), now: time.Now}
}

// Allow takes a token if there is one; otherwise it reports how long
// until there is.
func (l *Limiter) Allow() (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true, 0
	}
	return false, time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
}
