package twoway

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/internal/keyschedule"
	"github.com/twoway-hsm/twoway-hsm/kem"
)

// suite is an HPKESuite resolved for this package: the algorithm
// identifiers and parameters, and the custom implementation when the suite
// is not one the in-place key schedule serves.
type suite struct {
	custom HPKESuite // nil: the fast path (keyschedule)
	kemID  hpke.KEM
	kdfID  hpke.KDF
	aeadID hpke.AEAD
	kdf    keyschedule.KDF
	aead   keyschedule.AEAD
	nenc   int

	// schedules caches key_schedule_context per info string (media type
	// and header): senders and receivers see few distinct ones.
	schedules     sync.Map // string -> *keyschedule.Schedule
	scheduleCount atomic.Int32
}

// maxCachedSchedules bounds the schedule cache of one sender or receiver.
const maxCachedSchedules = 64

func (s *suite) schedule(info []byte) (*keyschedule.Schedule, error) {
	if v, ok := s.schedules.Load(string(info)); ok {
		return v.(*keyschedule.Schedule), nil
	}
	ks := keyschedule.Suite{KEM: uint16(s.kemID), KDF: uint16(s.kdfID), AEAD: uint16(s.aeadID)}
	sc, err := keyschedule.NewSchedule(ks, info)
	if err != nil {
		return nil, err
	}
	// Load first: once the cache is full, misses must not keep counting
	// (the counter would wrap and the cache grow again).
	if s.scheduleCount.Load() < maxCachedSchedules && s.scheduleCount.Add(1) <= maxCachedSchedules {
		s.schedules.Store(string(info), sc)
	}
	return sc, nil
}

// newSuite resolves an HPKESuite. Suites from AdaptCirclHPKESuite take the
// fast path; any other goes through its own implementation.
func newSuite(hs HPKESuite) (*suite, error) {
	if hs == nil {
		return nil, fmt.Errorf("twoway: nil HPKE suite")
	}
	s, err := resolveSuite(hs.Params())
	if err != nil {
		return nil, err
	}
	if _, ok := hs.(circlSuite); !ok {
		s.custom = hs
	}
	return s, nil
}

// newKeySuite resolves the suite of a receiver built from a kem.PrivateKey,
// which always takes the fast path.
func newKeySuite(kemID kem.ID, kdfID hpke.KDF, aeadID hpke.AEAD) (*suite, error) {
	s, err := resolveSuite(hpke.KEM(kemID), kdfID, aeadID)
	if err != nil {
		return nil, err
	}
	if !kemID.Supported() {
		return nil, fmt.Errorf("%w: KEM %v", ErrUnsupportedSuite, kemID)
	}
	return s, nil
}

// resolveSuite returns the suite of three algorithm identifiers, or an
// error wrapping ErrUnsupportedSuite.
func resolveSuite(kemID hpke.KEM, kdfID hpke.KDF, aeadID hpke.AEAD) (*suite, error) {
	if err := checkSuiteIDs(kemID, kdfID, aeadID); err != nil {
		return nil, err
	}
	kdf, _ := keyschedule.NewKDF(uint16(kdfID))
	aead, _ := keyschedule.LookupAEAD(uint16(aeadID))
	s := &suite{
		kemID: kemID, kdfID: kdfID, aeadID: aeadID,
		kdf:  kdf,
		aead: aead,
		nenc: kem.ID(kemID).EncapsulatedKeySize(),
	}
	if kemID.IsValid() {
		s.nenc = kemID.Scheme().CiphertextSize()
	}
	return s, nil
}

func (s *suite) header(keyID byte) RequestHeader {
	return RequestHeader{KeyID: keyID, KemID: s.kemID, KDFID: s.kdfID, AEADID: s.aeadID}
}

// sealCtx seals successive chunks of one message, in place when dst is
// pt[:0] and has room for the tag.
type sealCtx interface {
	Overhead() int
	Seal(dst, pt, aad []byte) ([]byte, error)
}

// openCtx opens successive chunks of one message, in place when dst is
// ct[:0].
type openCtx interface {
	Overhead() int
	Open(dst, ct, aad []byte) ([]byte, error)
}

// exporter exports secrets from an HPKE context.
type exporter interface {
	Export(exporterContext []byte, length int) ([]byte, error)
}

// hpkeSendCtx is a sending HPKE context: sealing plus export.
type hpkeSendCtx interface {
	sealCtx
	exporter
}

// hpkeRecvCtx is a receiving HPKE context: opening plus export.
type hpkeRecvCtx interface {
	openCtx
	exporter
}

// checkPublicKey validates a circl public key for the suite's KEM and
// returns it re-parsed by the KEM's own scheme. A custom suite gets the key
// as it is: only its implementation knows what it accepts.
func (s *suite) checkPublicKey(pub circlkem.PublicKey) (circlkem.PublicKey, error) {
	if pub == nil {
		return nil, fmt.Errorf("twoway: nil public key")
	}
	if s.custom != nil {
		return pub, nil
	}
	if !s.kemID.IsValid() {
		return nil, fmt.Errorf("twoway: %w: circl cannot encapsulate to %v", ErrUnsupportedSuite, kem.ID(s.kemID))
	}
	b, err := pub.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("twoway: marshal public key: %w", err)
	}
	scheme := s.kemID.Scheme()
	if len(b) != scheme.PublicKeySize() {
		return nil, fmt.Errorf("twoway: public key of %d bytes is not a %v key", len(b), kem.ID(s.kemID))
	}
	p, err := scheme.UnmarshalBinaryPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("twoway: public key is not a valid %v key: %w", kem.ID(s.kemID), err)
	}
	return p, nil
}

// setupSender encapsulates to pub and returns enc and the sending context.
func (s *suite) setupSender(pub circlkem.PublicKey, rnd io.Reader, info []byte) ([]byte, hpkeSendCtx, error) {
	if s.custom != nil {
		snd, err := s.custom.NewSender(pub, info)
		if err != nil {
			return nil, nil, fmt.Errorf("twoway: hpke sender: %w", err)
		}
		enc, sealer, err := snd.Setup(rnd)
		if err != nil {
			return nil, nil, fmt.Errorf("twoway: hpke sender setup: %w", err)
		}
		return enc, customSealer{sealer, s.aead.Overhead}, nil
	}
	scheme := s.kemID.Scheme()
	seed := make([]byte, scheme.EncapsulationSeedSize())
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, nil, fmt.Errorf("twoway: read randomness: %w", err)
	}
	enc, ss, err := scheme.EncapsulateDeterministically(pub, seed)
	clear(seed)
	if err != nil {
		return nil, nil, fmt.Errorf("twoway: encapsulate: %w", err)
	}
	ctx, err := s.newContext(ss, info)
	if err != nil {
		return nil, nil, err
	}
	return enc, ctx, nil
}

// newContext runs the key schedule of one message on the fast path from the
// KEM shared secret ss, and zeroes ss.
func (s *suite) newContext(ss, info []byte) (*keyschedule.Context, error) {
	defer clear(ss)
	sc, err := s.schedule(info)
	if err != nil {
		return nil, err
	}
	return sc.NewContext(ss)
}

// receiverKey is how a receiver reaches its private key: a kem.PrivateKey on
// the fast path, a circl key for a custom suite.
type receiverKey struct {
	key   kem.PrivateKey
	circl circlkem.PrivateKey
}

// setupReceiver decapsulates enc and returns the receiving context.
func (s *suite) setupReceiver(ctx context.Context, k *receiverKey, enc, info []byte) (hpkeRecvCtx, error) {
	if len(enc) != s.nenc {
		return nil, fmt.Errorf("twoway: encapsulated key of %d bytes, %v needs %d: %w", len(enc), kem.ID(s.kemID), s.nenc, ErrMalformed)
	}
	if s.custom != nil {
		rcv, err := s.custom.NewReceiver(k.circl, info)
		if err != nil {
			return nil, fmt.Errorf("twoway: hpke receiver: %w", err)
		}
		opener, err := rcv.Setup(enc)
		if err != nil {
			return nil, fmt.Errorf("twoway: hpke receiver setup: %w", err)
		}
		return customOpener{opener, s.aead.Overhead}, nil
	}
	ss, err := k.key.DecapsulateContext(ctx, enc)
	if err != nil {
		return nil, fmt.Errorf("twoway: decapsulate: %w", err)
	}
	rctx, err := s.newContext(ss, info)
	if err != nil {
		return nil, err
	}
	return rctx, nil
}

// responseCtx returns the response key derivation of the message whose
// HPKE context is exp and whose encapsulated key is enc.
func (s *suite) responseCtx(exp exporter, enc []byte) *responseCtx {
	return &responseCtx{exp: exp, enc: enc, kdf: s.kdf, aead: s.aead}
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// customSealer adapts an HPKESealer to sealCtx. It allocates on every call.
type customSealer struct {
	s        HPKESealer
	overhead int
}

func (c customSealer) Overhead() int { return c.overhead }

func (c customSealer) Seal(dst, pt, aad []byte) ([]byte, error) {
	ct, err := c.s.Seal(pt, aad)
	if err != nil {
		return nil, fmt.Errorf("twoway: hpke seal: %w", err)
	}
	if len(ct) != len(pt)+c.overhead {
		return nil, fmt.Errorf("twoway: hpke seal returned %d bytes for %d bytes of plaintext", len(ct), len(pt))
	}
	return append(dst, ct...), nil
}

func (c customSealer) Export(exporterContext []byte, length int) ([]byte, error) {
	return c.s.Export(exporterContext, uint(length)), nil
}

// customOpener adapts an HPKEOpener to openCtx.
type customOpener struct {
	o        HPKEOpener
	overhead int
}

func (c customOpener) Overhead() int { return c.overhead }

func (c customOpener) Open(dst, ct, aad []byte) ([]byte, error) {
	pt, err := c.o.Open(ct, aad)
	if err != nil {
		return nil, err
	}
	if len(pt)+c.overhead != len(ct) {
		return nil, fmt.Errorf("twoway: hpke open returned %d bytes for %d bytes of ciphertext", len(pt), len(ct))
	}
	return append(dst, pt...), nil
}

func (c customOpener) Export(exporterContext []byte, length int) ([]byte, error) {
	return c.o.Export(exporterContext, uint(length)), nil
}
