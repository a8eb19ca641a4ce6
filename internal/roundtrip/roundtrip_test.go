package roundtrip_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// TestShapes runs every shape of round trip with software keys
// of each KEM the sender side supports, in this process.
func TestShapes(t *testing.T) {
	ctx := context.Background()
	for _, id := range []kem.ID{kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512, kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.MLKEM768, kem.XWing} {
		key, err := kem.GenerateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := roundtrip.New(key, hpke.KDF_HKDF_SHA384, hpke.AEAD_AES256GCM, 3*roundtrip.ChunkLen+17)
		if !hpke.KEM(id).IsValid() {
			if err == nil {
				t.Errorf("%v: no error for a KEM without an HPKE sender", id)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		for s := range roundtrip.NumShapes {
			if err := rt.Run(ctx, s); err != nil {
				t.Errorf("%v %s: %v", id, s, err)
			}
		}
		// One decapsulation per one-to-one round trip, one per receiver of
		// a one-to-many one.
		if got, want := len(rt.Decapsulations()), 2+2*roundtrip.MultiReceivers; got != want {
			t.Errorf("%v: %d decapsulations timed; want %d", id, got, want)
		}
	}
}

// wrongKey has the public key of one key and decapsulates with another.
type wrongKey struct {
	kem.PrivateKey
	other kem.PrivateKey
}

func (k wrongKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	return k.other.DecapsulateContext(ctx, enc)
}

func TestWrongKeyFails(t *testing.T) {
	a, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	b, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	rt, err := roundtrip.New(wrongKey{a, b}, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, 100)
	if err != nil {
		t.Fatal(err)
	}
	for s := range roundtrip.NumShapes {
		err := rt.Run(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), "server") {
			t.Errorf("%s with the wrong key: %v", s, err)
		}
	}
	if n := len(rt.Decapsulations()); n != 4 {
		// Decapsulation itself succeeds; opening fails afterwards. The
		// one-to-many round trips stop at their first receiver.
		t.Errorf("%d decapsulations timed", n)
	}
}
