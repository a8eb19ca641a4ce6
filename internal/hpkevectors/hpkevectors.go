// Package hpkevectors holds the mode-base test vectors of RFC 9180
// (the CFRG's test-vectors.json, cut to the KEMs this module supports), for
// the tests of the key schedule and of the kem package. Only tests import
// it.
package hpkevectors

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"testing"
)

//go:embed rfc9180-base.json
var base []byte

// Hex is a byte string written in the vectors as hexadecimal.
type Hex []byte

// UnmarshalJSON decodes a JSON string of hexadecimal digits.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// Vector is one test vector: a suite, the receiver's key pair, an
// encapsulation with its shared secret, the key schedule's outputs, and the
// encryptions and exports made with the context.
type Vector struct {
	Mode               int    `json:"mode"`
	KEM                uint16 `json:"kem_id"`
	KDF                uint16 `json:"kdf_id"`
	AEAD               uint16 `json:"aead_id"`
	Info               Hex    `json:"info"`
	SkRm               Hex    `json:"skRm"`
	PkRm               Hex    `json:"pkRm"`
	Enc                Hex    `json:"enc"`
	SharedSecret       Hex    `json:"shared_secret"`
	KeyScheduleContext Hex    `json:"key_schedule_context"`
	BaseNonce          Hex    `json:"base_nonce"`
	ExporterSecret     Hex    `json:"exporter_secret"`
	Encryptions        []struct {
		Seq   uint64 `json:"seq"`
		AAD   Hex    `json:"aad"`
		CT    Hex    `json:"ct"`
		Nonce Hex    `json:"nonce"`
		PT    Hex    `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context Hex `json:"exporter_context"`
		L       int `json:"L"`
		Value   Hex `json:"exported_value"`
	} `json:"exports"`
}

// Base returns the mode-base vectors, and fails tb if the embedded file
// cannot be read or holds none or one of another mode.
func Base(tb testing.TB) []Vector {
	tb.Helper()
	var vs []Vector
	if err := json.Unmarshal(base, &vs); err != nil {
		tb.Fatalf("hpkevectors: %v", err)
	}
	if len(vs) == 0 {
		tb.Fatal("hpkevectors: no vectors")
	}
	for i, v := range vs {
		if v.Mode != 0 {
			tb.Fatalf("hpkevectors: vector %d has mode %d, not base", i, v.Mode)
		}
	}
	return vs
}
