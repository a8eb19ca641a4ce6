package twoway

import (
	"io"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"
)

// HPKESuite is an HPKE ciphersuite. It lets callers plug in an HPKE
// implementation other than circl's. Suites from [AdaptCirclHPKESuite] (and
// the plain hpke.Suite constructors) use this package's in-place key
// schedule instead of the interface; custom suites go through the interface
// and so allocate on every chunk.
type HPKESuite interface {
	NewSender(pubKey circlkem.PublicKey, info []byte) (HPKESender, error)
	NewReceiver(privKey circlkem.PrivateKey, info []byte) (HPKEReceiver, error)
	Params() (hpke.KEM, hpke.KDF, hpke.AEAD)
}

// HPKEReceiver sets up receiving HPKE contexts from encapsulated keys.
type HPKEReceiver interface {
	Setup(enc []byte) (HPKEOpener, error)
}

// HPKESender sets up sending HPKE contexts, returning the encapsulated key.
type HPKESender interface {
	Setup(rnd io.Reader) ([]byte, HPKESealer, error)
}

// HPKEExporter exports secrets from an HPKE context (RFC 9180 section 5.3).
type HPKEExporter interface {
	Export(exporterContext []byte, length uint) []byte
}

// HPKEOpener is a receiving HPKE context.
type HPKEOpener interface {
	HPKEExporter
	Open(ct, aad []byte) ([]byte, error)
}

// HPKESealer is a sending HPKE context.
type HPKESealer interface {
	HPKEExporter
	Seal(pt, aad []byte) ([]byte, error)
}

// AdaptCirclHPKESuite adapts a circl HPKE suite to an HPKESuite. Senders and
// receivers built on it use this package's in-place key schedule, which gives
// the same bytes as circl's.
func AdaptCirclHPKESuite(suite hpke.Suite) HPKESuite {
	return circlSuite{suite}
}

// circlSuite is the HPKESuite of a circl suite. The package recognises it and
// takes the fast path; its methods serve callers that use it directly.
type circlSuite struct{ suite hpke.Suite }

func (s circlSuite) NewSender(pubKey circlkem.PublicKey, info []byte) (HPKESender, error) {
	snd, err := s.suite.NewSender(pubKey, info)
	if err != nil {
		return nil, err
	}
	return circlSender{snd}, nil
}

func (s circlSuite) NewReceiver(privKey circlkem.PrivateKey, info []byte) (HPKEReceiver, error) {
	rcv, err := s.suite.NewReceiver(privKey, info)
	if err != nil {
		return nil, err
	}
	return circlReceiver{rcv}, nil
}

func (s circlSuite) Params() (hpke.KEM, hpke.KDF, hpke.AEAD) { return s.suite.Params() }

type circlSender struct{ s *hpke.Sender }

func (s circlSender) Setup(rnd io.Reader) ([]byte, HPKESealer, error) {
	enc, sealer, err := s.s.Setup(rnd)
	if err != nil {
		return nil, nil, err
	}
	return enc, sealer, nil
}

type circlReceiver struct{ r *hpke.Receiver }

func (r circlReceiver) Setup(enc []byte) (HPKEOpener, error) {
	opener, err := r.r.Setup(enc)
	if err != nil {
		return nil, err
	}
	return opener, nil
}
