package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// EvidenceSetFormat, EvidenceSetVersion and EvidenceSetMediaType identify
// the gateway's evidence container (see the package documentation).
const (
	EvidenceSetFormat    = "twoway-hsm/gateway-evidence"
	EvidenceSetVersion   = 1
	EvidenceSetMediaType = "application/vnd.twoway-hsm.gateway-evidence+json"
)

// Limits of the container's parser.
const (
	// MaxEvidenceSetSize bounds a container document.
	MaxEvidenceSetSize = 1 << 20
	// MaxEvidenceSetKeys bounds its entries (one per key id).
	MaxEvidenceSetKeys = 256
	// maxProblem bounds an entry's problem text.
	maxProblem = 1024
)

// EvidenceSet is what a gateway serves at
// /.well-known/ohttp-gateway/evidence: one entry per key it publishes,
// each with the key's evidence or the reason there is none.
type EvidenceSet struct {
	// Nonce is the client's nonce every evidence was made for (GET
	// ...?nonce=HEX); nil for the gateway's cached evidence, made for no
	// nonce.
	Nonce []byte
	// Keys are the entries, by key id.
	Keys []KeyEvidence
}

// KeyEvidence is one entry of an EvidenceSet.
type KeyEvidence struct {
	KeyID byte
	// Evidence is the key's evidence; nil when Problem says why not.
	Evidence *Evidence
	// NotAttestable says that the key cannot be attested at all (a
	// PKCS#11 or software key); otherwise a missing evidence is a
	// failure of the moment (the TPM did not answer).
	NotAttestable bool
	// Problem says why there is no evidence.
	Problem string
}

type evidenceSetJSON struct {
	Format  string            `json:"format"`
	Version int               `json:"version"`
	Nonce   *b64              `json:"nonce,omitempty"`
	Keys    []keyEvidenceJSON `json:"keys"`
}

type keyEvidenceJSON struct {
	KeyID         *int            `json:"key_id"`
	Evidence      json.RawMessage `json:"evidence,omitempty"`
	NotAttestable bool            `json:"not_attestable,omitempty"`
	Problem       string          `json:"problem,omitempty"`
}

// Err returns nil when the entry has evidence, else an error saying why
// not; it wraps ErrNotAttestable when the key cannot be attested.
func (k *KeyEvidence) Err() error {
	switch {
	case k.Evidence != nil:
		return nil
	case k.NotAttestable:
		return fmt.Errorf("key id %d: %w: %s", k.KeyID, ErrNotAttestable, k.Problem)
	}
	return fmt.Errorf("key id %d: the gateway has no evidence for it: %s", k.KeyID, k.Problem)
}

// Marshal returns the container document.
func (s *EvidenceSet) Marshal() ([]byte, error) {
	w := evidenceSetJSON{Format: EvidenceSetFormat, Version: EvidenceSetVersion, Keys: []keyEvidenceJSON{}}
	if s.Nonce != nil {
		n := b64(s.Nonce)
		w.Nonce = &n
	}
	for _, k := range s.Keys {
		id := int(k.KeyID)
		e := keyEvidenceJSON{KeyID: &id, NotAttestable: k.NotAttestable, Problem: k.Problem}
		if k.Evidence != nil {
			b, err := k.Evidence.MarshalJSON()
			if err != nil {
				return nil, err
			}
			e.Evidence = b
		} else if e.Problem == "" {
			e.Problem = "no evidence"
		}
		w.Keys = append(w.Keys, e)
	}
	return json.Marshal(w)
}

// ParseEvidenceSet parses a container strictly, as ParseEvidence does
// evidence: at most MaxEvidenceSetSize bytes and MaxEvidenceSetKeys
// entries, format and version checked, no member unknown or repeated,
// each key id once, each entry either evidence (parsed by ParseEvidence,
// for the entry's key id and the container's nonce) or a problem. It does
// not verify the evidence: that is Verify's job. Errors wrap ErrMalformed
// or ErrUnsupportedVersion.
func ParseEvidenceSet(b []byte) (*EvidenceSet, error) {
	if len(b) > MaxEvidenceSetSize {
		return nil, fmt.Errorf("%w: evidence set: %d bytes, more than %d", ErrMalformed, len(b), MaxEvidenceSetSize)
	}
	var w evidenceSetJSON
	if err := strictDecode(b, EvidenceSetFormat, EvidenceSetVersion, &w); err != nil {
		return nil, fmt.Errorf("evidence set: %w", err)
	}
	s := &EvidenceSet{}
	if w.Nonce != nil {
		if len(*w.Nonce) == 0 || len(*w.Nonce) > MaxNonceSize {
			return nil, fmt.Errorf("%w: evidence set: nonce of %d bytes, want 1 to %d", ErrMalformed, len(*w.Nonce), MaxNonceSize)
		}
		s.Nonce = *w.Nonce
	}
	if w.Keys == nil {
		return nil, fmt.Errorf("%w: evidence set: no \"keys\" member", ErrMalformed)
	}
	if len(w.Keys) > MaxEvidenceSetKeys {
		return nil, fmt.Errorf("%w: evidence set: %d entries, more than %d", ErrMalformed, len(w.Keys), MaxEvidenceSetKeys)
	}
	seen := map[int]bool{}
	for i, e := range w.Keys {
		if e.KeyID == nil || *e.KeyID < 0 || *e.KeyID > 255 {
			return nil, fmt.Errorf("%w: evidence set: keys[%d]: no key_id from 0 to 255", ErrMalformed, i)
		}
		id := *e.KeyID
		if seen[id] {
			return nil, fmt.Errorf("%w: evidence set: key id %d listed twice", ErrMalformed, id)
		}
		seen[id] = true
		k := KeyEvidence{KeyID: byte(id), NotAttestable: e.NotAttestable, Problem: e.Problem}
		if len(e.Problem) > maxProblem {
			return nil, fmt.Errorf("%w: evidence set: key id %d: problem of %d bytes, more than %d", ErrMalformed, id, len(e.Problem), maxProblem)
		}
		hasEvidence := len(e.Evidence) > 0 && string(e.Evidence) != "null"
		switch {
		case hasEvidence && (e.Problem != "" || e.NotAttestable):
			return nil, fmt.Errorf("%w: evidence set: key id %d has both evidence and a problem", ErrMalformed, id)
		case !hasEvidence && e.Problem == "":
			return nil, fmt.Errorf("%w: evidence set: key id %d has neither evidence nor a problem", ErrMalformed, id)
		}
		if hasEvidence {
			ev, err := ParseEvidence(e.Evidence)
			if err != nil {
				return nil, fmt.Errorf("evidence set: key id %d: %w", id, err)
			}
			if ev.KeyConfig[0] != byte(id) {
				return nil, fmt.Errorf("%w: evidence set: the entry of key id %d holds evidence for key id %d", ErrMalformed, id, ev.KeyConfig[0])
			}
			if !bytes.Equal(ev.Nonce, s.Nonce) {
				return nil, fmt.Errorf("%w: evidence set: key id %d: the evidence's nonce is not the set's", ErrNonce, id)
			}
			k.Evidence = ev
		}
		s.Keys = append(s.Keys, k)
	}
	return s, nil
}
