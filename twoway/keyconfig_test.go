package twoway_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

func TestKeyConfigRFC9458Example(t *testing.T) {
	b := unhex(t, rfc9458Example.keyConfig)
	var kc twoway.KeyConfig
	if err := kc.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := twoway.KeyConfig{
		KeyID:     1,
		KEM:       hpke.KEM_X25519_HKDF_SHA256,
		PublicKey: unhex(t, "31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155"),
		Suites: []twoway.SymmetricSuite{
			{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM},
			{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305},
		},
	}
	if kc.KeyID != want.KeyID || kc.KEM != want.KEM || !bytes.Equal(kc.PublicKey, want.PublicKey) || len(kc.Suites) != 2 || kc.Suites[0] != want.Suites[0] || kc.Suites[1] != want.Suites[1] {
		t.Fatalf("parsed %+v, want %+v", kc, want)
	}
	out, err := kc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("re-encoded %x, want %x", out, b)
	}
	// The public key is the example's skR's.
	sk, _ := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(unhex(t, rfc9458Example.skR))
	pub, _ := sk.Public().MarshalBinary()
	if !bytes.Equal(pub, kc.PublicKey) {
		t.Fatal("key config public key does not match skR")
	}

	// As an application/ohttp-keys list, alone and with a second config.
	second := twoway.KeyConfig{KeyID: 2, KEM: hpke.KEM_P256_HKDF_SHA256, PublicKey: p256Pub(t), Suites: []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES256GCM}}}
	list, err := twoway.MarshalKeyConfigs([]twoway.KeyConfig{kc, second})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(list[:2], []byte{0, byte(len(b))}) || !bytes.Equal(list[2:2+len(b)], b) {
		t.Fatalf("list does not start with the length-prefixed example: %x", list)
	}
	got, err := twoway.ParseKeyConfigs(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].KeyID != 2 || !bytes.Equal(got[1].PublicKey, second.PublicKey) {
		t.Fatalf("parsed list %+v", got)
	}
}

func p256Pub(t *testing.T) []byte {
	pk, _ := keyPair(t, hpke.KEM_P256_HKDF_SHA256, "kc")
	b, _ := pk.MarshalBinary()
	return b
}

func TestKeyConfigStrict(t *testing.T) {
	good := unhex(t, rfc9458Example.keyConfig)
	bad := map[string][]byte{
		"empty":                {},
		"no KEM":               good[:2],
		"unknown KEM":          append([]byte{1, 0x99, 0x99}, good[3:]...),
		"short public key":     good[:20],
		"no algorithms length": good[:3+32],
		"algorithms length 0":  append(bytes.Clone(good[:3+32]), 0, 0),
		"algorithms length 6":  append(bytes.Clone(good[:3+32]), 0, 6, 0, 1, 0, 1, 0, 1),
		"algorithms truncated": good[:len(good)-1],
		"trailing byte":        append(bytes.Clone(good), 0),
		"unknown KDF":          append(bytes.Clone(good[:3+32]), 0, 4, 0, 9, 0, 1),
		"unknown AEAD":         append(bytes.Clone(good[:3+32]), 0, 4, 0, 1, 0, 9),
		"export-only AEAD":     append(bytes.Clone(good[:3+32]), 0, 4, 0, 1, 0xff, 0xff),
	}
	for name, b := range bad {
		var kc twoway.KeyConfig
		if err := kc.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := twoway.ParseKeyConfigs(append([]byte{0, byte(len(b))}, b...)); err == nil {
			t.Errorf("%s: accepted in a list", name)
		}
	}
	lists := map[string][]byte{
		"empty list":       {},
		"stray byte":       append(append([]byte{0, byte(len(good))}, good...), 0),
		"length too long":  append([]byte{0, byte(len(good) + 1)}, good...),
		"length too short": append([]byte{0, byte(len(good) - 1)}, good...),
	}
	for name, b := range lists {
		if _, err := twoway.ParseKeyConfigs(b); !errors.Is(err, twoway.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for name, kc := range map[string]twoway.KeyConfig{
		"no suites":        {KeyID: 1, KEM: hpke.KEM_X25519_HKDF_SHA256, PublicKey: make([]byte, 32)},
		"wrong key length": {KeyID: 1, KEM: hpke.KEM_X25519_HKDF_SHA256, PublicKey: make([]byte, 31), Suites: []twoway.SymmetricSuite{{KDF: 1, AEAD: 1}}},
		"unknown KEM":      {KeyID: 1, KEM: 0x99, PublicKey: make([]byte, 32), Suites: []twoway.SymmetricSuite{{KDF: 1, AEAD: 1}}},
	} {
		if _, err := kc.MarshalBinary(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	if _, err := twoway.MarshalKeyConfigs(nil); err == nil {
		t.Error("empty list encoded")
	}
}

func TestRequestHeader(t *testing.T) {
	want := twoway.RequestHeader{KeyID: 255, KemID: hpke.KEM_P384_HKDF_SHA384, KDFID: hpke.KDF_HKDF_SHA384, AEADID: hpke.AEAD_AES256GCM}
	enc := []byte{255, 0, 0x11, 0, 2, 0, 2}
	got, err := twoway.ParseRequestHeaderFrom(append(bytes.Clone(enc), 9, 9))
	if err != nil || got != want {
		t.Fatalf("parsed %v, %v", got, err)
	}
	if b, _ := got.MarshalBinary(); !bytes.Equal(b, enc) {
		t.Fatalf("marshalled %x", b)
	}
	for name, b := range map[string][]byte{
		"nil":          nil,
		"short":        enc[:6],
		"unknown KEM":  {1, 0, 0, 0, 2, 0, 2},
		"unknown KDF":  {1, 0, 0x11, 0, 0, 0, 2},
		"unknown AEAD": {1, 0, 0x11, 0, 2, 0, 0},
		"export-only":  {1, 0, 0x11, 0, 2, 0xff, 0xff},
	} {
		if _, err := twoway.ParseRequestHeaderFrom(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if s := want.String(); s != "key id 255, DHKEM(P-384, HKDF-SHA384), HKDF-SHA384, AES-256-GCM" {
		t.Errorf("String() = %q", s)
	}
}
