package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestParseChallengeAnswer: a challenge and an answer survive their JSON
// form, and the parsers refuse what two readers could read differently.
func TestParseChallengeAnswer(t *testing.T) {
	ev, _ := testdataEvidence(t)
	ch, secret, err := MakeChallenge(ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseChallenge(b)
	if err != nil {
		t.Fatalf("ParseChallenge: %v", err)
	}
	if got.Version != ActivationVersion || !bytes.Equal(got.EKPublic, ev.EKPublic) || !bytes.Equal(got.AKPublic, ev.AKPublic) ||
		!bytes.Equal(got.CredentialBlob, ch.CredentialBlob) || !bytes.Equal(got.EncryptedSecret, ch.EncryptedSecret) {
		t.Fatalf("challenge %+v, want %+v", got, ch)
	}
	ans := &Answer{Version: ActivationVersion, Proof: ActivationProof(secret.value)}
	ab, err := json.Marshal(ans)
	if err != nil {
		t.Fatal(err)
	}
	gotAns, err := ParseAnswer(ab)
	if err != nil {
		t.Fatalf("ParseAnswer: %v", err)
	}
	if err := CheckActivation(secret, gotAns); err != nil {
		t.Fatalf("CheckActivation of the parsed answer: %v", err)
	}

	cs, as := string(b), string(ab)
	for _, tc := range []struct {
		name string
		doc  string
		want error
	}{
		{"challenge, repeated member", strings.Replace(cs, `"version":1`, `"version":1,"version":1`, 1), ErrMalformed},
		{"challenge, unknown member", strings.Replace(cs, `"version":1`, `"version":1,"x":1`, 1), ErrMalformed},
		{"challenge, version 2", strings.Replace(cs, `"version":1`, `"version":2`, 1), ErrUnsupportedVersion},
		{"challenge, missing field", `{"version":1,"ek_public":"AA==","ak_public":"AA==","credential_blob":"AA=="}`, ErrMalformed},
		{"challenge, trailing data", cs + "{}", ErrMalformed},
		{"challenge, line break in base64", strings.Replace(cs, `"ek_public":"A`, `"ek_public":"\nA`, 1), ErrMalformed},
		{"answer, repeated member", strings.Replace(as, `"version":1`, `"version":1,"version":1`, 1), ErrMalformed},
		{"answer, version 0", strings.Replace(as, `"version":1`, `"version":0`, 1), ErrUnsupportedVersion},
		{"answer, empty proof", `{"version":1,"proof":""}`, ErrMalformed},
		{"answer, short proof", `{"version":1,"proof":"AAAA"}`, ErrMalformed},
		{"answer, the credential's old member", strings.Replace(as, `"proof"`, `"secret"`, 1), ErrMalformed},
		{"challenge, credential blob of another size", strings.Replace(cs, `"credential_blob":"`, `"credential_blob":"AAAA`, 1), ErrMalformed},
		{"answer, trailing data", as + " 1", ErrMalformed},
	} {
		if tc.doc == cs || tc.doc == as {
			t.Fatalf("%s: the document is unchanged", tc.name)
		}
		var err error
		if strings.HasPrefix(tc.name, "challenge") {
			_, err = ParseChallenge([]byte(tc.doc))
		} else {
			_, err = ParseAnswer([]byte(tc.doc))
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
