package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// testSet returns a container with the testdata evidence (key id 1, for
// the testdata nonce) and a key that cannot be attested.
func testSet(t testing.TB) (*EvidenceSet, Options) {
	t.Helper()
	b, opts := testEvidence(t)
	ev, err := ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	return &EvidenceSet{Nonce: ev.Nonce, Keys: []KeyEvidence{
		{KeyID: 1, Evidence: ev},
		{KeyID: 2, NotAttestable: true, Problem: "a pkcs11 key: PKCS#11 defines no key attestation"},
		{KeyID: 3, Problem: "the evidence could not be collected: the TPM did not answer"},
	}}, opts
}

func TestEvidenceSetRoundTrip(t *testing.T) {
	set, opts := testSet(t)
	b, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEvidenceSet(b)
	if err != nil {
		t.Fatalf("ParseEvidenceSet: %v\n%s", err, b)
	}
	if !bytes.Equal(got.Nonce, set.Nonce) || len(got.Keys) != 3 {
		t.Fatalf("parsed: %+v", got)
	}
	if _, err := Verify(got.Keys[0].Evidence, opts); err != nil {
		t.Errorf("the entry's evidence: %v", err)
	}
	if err := got.Keys[0].Err(); err != nil {
		t.Errorf("Err of an entry with evidence: %v", err)
	}
	if err := got.Keys[1].Err(); !errors.Is(err, ErrNotAttestable) || !strings.Contains(err.Error(), "PKCS#11") {
		t.Errorf("Err of a not attestable entry: %v", err)
	}
	if err := got.Keys[2].Err(); err == nil || errors.Is(err, ErrNotAttestable) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("Err of a failed entry: %v", err)
	}
	b2, _ := got.Marshal()
	if !bytes.Equal(b, b2) {
		t.Error("Marshal and ParseEvidenceSet are not stable")
	}
}

// TestParseEvidenceSetStrict: each malformation is refused, naming it.
func TestParseEvidenceSetStrict(t *testing.T) {
	set, _ := testSet(t)
	good, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(good, &m); err != nil {
		t.Fatal(err)
	}
	evJSON, _ := set.Keys[0].Evidence.MarshalJSON()
	with := func(key, value string) []byte {
		c := map[string]json.RawMessage{}
		for k, v := range m {
			c[k] = v
		}
		if value == "" {
			delete(c, key)
		} else {
			c[key] = json.RawMessage(value)
		}
		b, _ := json.Marshal(c)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
		text string
	}{
		{"not JSON", []byte("nope"), ErrMalformed, "invalid"},
		{"other format", with("format", `"x"`), ErrMalformed, "format"},
		{"other version", with("version", `2`), ErrUnsupportedVersion, "version 2"},
		{"no keys", with("keys", ""), ErrMalformed, `no "keys"`},
		{"unknown member", with("extra", `1`), ErrMalformed, "unknown field"},
		{"repeated member", []byte(strings.Replace(string(good), `"version":1`, `"version":1,"version":1`, 1)), ErrMalformed, "repeated"},
		{"key id twice", with("keys", `[{"key_id":2,"problem":"x"},{"key_id":2,"problem":"y"}]`), ErrMalformed, "listed twice"},
		{"key id out of range", with("keys", `[{"key_id":256,"problem":"x"}]`), ErrMalformed, "key_id"},
		{"no key id", with("keys", `[{"problem":"x"}]`), ErrMalformed, "key_id"},
		{"neither", with("keys", `[{"key_id":2}]`), ErrMalformed, "neither evidence nor a problem"},
		{"both", with("keys", `[{"key_id":1,"problem":"x","evidence":`+string(evJSON)+`}]`), ErrMalformed, "both"},
		{"evidence for another key id", with("keys", `[{"key_id":9,"evidence":`+string(evJSON)+`}]`), ErrMalformed, "holds evidence for key id 1"},
		{"evidence for another nonce", with("nonce", `"AAAA"`), ErrNonce, "not the set's"},
		{"no nonce, evidence with one", with("nonce", ""), ErrNonce, "not the set's"},
		{"bad evidence", with("keys", `[{"key_id":1,"evidence":{"format":"twoway-hsm/tpm2-key-evidence","version":1}}]`), ErrMalformed, "key id 1"},
		{"too large", bytes.Repeat([]byte(" "), MaxEvidenceSetSize+1), ErrMalformed, "more than"},
		{"trailing data", append(append([]byte{}, good...), []byte(" {}")...), ErrMalformed, "after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEvidenceSet(tc.b)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("ParseEvidenceSet: %v, want %v saying %q", err, tc.want, tc.text)
			}
		})
	}
}

// FuzzParseEvidenceSet: the container's parser never panics and accepts
// only documents it marshals back to themselves, parsed alike. Seeds:
// testdata/fuzz/FuzzParseEvidenceSet and the test container.
func FuzzParseEvidenceSet(f *testing.F) {
	set, _ := testSet(f)
	good, err := set.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseEvidenceSet(b)
		if err != nil {
			return
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed set: %v", err)
		}
		again, err := ParseEvidenceSet(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		out2, _ := again.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatal("parse and marshal are not stable")
		}
		for _, k := range s.Keys {
			if (k.Evidence == nil) == (k.Err() == nil) {
				t.Fatalf("key id %d: evidence %v, Err %v", k.KeyID, k.Evidence != nil, k.Err())
			}
		}
	})
}

// FuzzParseChallenge: the challenge and answer parsers (what the gateway
// reads from clients, and clients from the gateway) never panic, and
// accept only what marshals back to something they accept alike. Seeds:
// testdata/fuzz/FuzzParseChallenge and a challenge for the testdata
// evidence.
func FuzzParseChallenge(f *testing.F) {
	b, _ := testEvidence(f)
	ev, err := ParseEvidence(b)
	if err != nil {
		f.Fatal(err)
	}
	ch, _, err := MakeChallenge(ev)
	if err != nil {
		f.Fatal(err)
	}
	cb, _ := json.Marshal(ch)
	f.Add(cb)
	f.Add([]byte(`{"version":1,"proof":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseChallenge(b); err == nil {
			out, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseChallenge(out)
			if err != nil || !bytes.Equal(again.EKPublic, c.EKPublic) || !bytes.Equal(again.AKPublic, c.AKPublic) ||
				!bytes.Equal(again.CredentialBlob, c.CredentialBlob) || !bytes.Equal(again.EncryptedSecret, c.EncryptedSecret) {
				t.Fatalf("challenge re-parse: %v", err)
			}
		}
		if a, err := ParseAnswer(b); err == nil {
			out, _ := json.Marshal(a)
			again, err := ParseAnswer(out)
			if err != nil || !bytes.Equal(again.Proof, a.Proof) {
				t.Fatalf("answer re-parse: %v", err)
			}
			if CheckActivation(&Secret{value: make([]byte, ActivationSecretSize)}, a) == nil && !bytes.Equal(a.Proof, ActivationProof(make([]byte, ActivationSecretSize))) {
				t.Fatal("CheckActivation accepted another secret")
			}
		}
	})
}
