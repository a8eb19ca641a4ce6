package tpm2

import (
	"testing"

	gotpm "github.com/google/go-tpm/tpm2"
)

// TestSessionAttrByte: the hand-written TPMA_SESSION marshalling agrees
// with go-tpm's for every combination of attributes.
func TestSessionAttrByte(t *testing.T) {
	for i := range 256 {
		a := gotpm.TPMASession{ContinueSession: i&1 != 0, AuditExclusive: i&2 != 0, AuditReset: i&4 != 0,
			Decrypt: i&32 != 0, Encrypt: i&64 != 0, Audit: i&128 != 0}
		if got, want := sessionAttrByte(a), gotpm.Marshal(a); len(want) != 1 || got != want[0] {
			t.Fatalf("%+v: %#02x, go-tpm marshals %x", a, got, want)
		}
	}
}
