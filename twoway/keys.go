package twoway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// NewRequestReceiverForKey returns a receiver for requests sealed to key
// with the given KDF and AEAD. The key is used only through its interface:
// its public key, and decapsulation. A key in a PKCS#11 token, a TPM or a
// plugin process stays there; wrap an ecdh.KeyExchanger, a
// crypto.Decapsulator or a circl key with [kem.From] (this module's kem
// package). A nil randReader means crypto/rand.
func NewRequestReceiverForKey(keyID byte, key kem.PrivateKey, kdf hpke.KDF, aead hpke.AEAD, randReader io.Reader) (*RequestReceiver, error) {
	s, err := keySuite(key, kdf, aead)
	if err != nil {
		return nil, err
	}
	return newRequestReceiver(s, keyID, receiverKey{key: key}, randReader), nil
}

// NewMultiRequestReceiverForKey is NewRequestReceiverForKey for one-to-many
// requests.
func NewMultiRequestReceiverForKey(keyID byte, key kem.PrivateKey, kdf hpke.KDF, aead hpke.AEAD, randReader io.Reader) (*MultiRequestReceiver, error) {
	s, err := keySuite(key, kdf, aead)
	if err != nil {
		return nil, err
	}
	return newMultiRequestReceiver(s, keyID, receiverKey{key: key}, randReader), nil
}

func keySuite(key kem.PrivateKey, kdf hpke.KDF, aead hpke.AEAD) (*suite, error) {
	if key == nil {
		return nil, fmt.Errorf("twoway: nil key")
	}
	s, err := newKeySuite(key.KEM(), kdf, aead)
	if err != nil {
		return nil, err
	}
	if key.KEM().IsDH() {
		if err := kem.CheckPublicKey(key.KEM(), key.PublicKeyBytes()); err != nil {
			return nil, fmt.Errorf("twoway: key: %w", err)
		}
	}
	return s, nil
}

// ErrUnknownKey means a request names a key id the Gateway does not hold.
var ErrUnknownKey = errors.New("twoway: unknown key id")

// Gateway opens requests sealed to any of several keys, choosing the key by
// the key id and suite in each request's header (RFC 9458 section 4.3), and
// publishes the matching key configurations.
//
// Operators rotate keys by adding the new key, publishing the new
// configurations, and removing the old key once clients have moved to the
// new one. A Gateway is safe for concurrent use.
type Gateway struct {
	rand io.Reader
	mu   sync.RWMutex
	keys map[byte]*gatewayKey
}

// gatewayKey is one key of a Gateway and its receiver for each suite it
// accepts, which serves one-to-one and one-to-many requests alike.
type gatewayKey struct {
	// hidden keys are accepted but not published (SetPublished).
	hidden    bool
	key       kem.PrivateKey
	suites    []SymmetricSuite
	receivers map[SymmetricSuite]*receiverBase
}

// NewGateway returns an empty Gateway. A nil randReader means crypto/rand;
// it supplies response nonces.
func NewGateway(randReader io.Reader) *Gateway {
	return &Gateway{rand: randOrDefault(randReader), keys: make(map[byte]*gatewayKey)}
}

// AddKey adds key under keyID, accepting requests sealed with any of
// suites. A key id already in use is an error: remove the old key first.
func (g *Gateway) AddKey(keyID byte, key kem.PrivateKey, suites ...SymmetricSuite) error {
	return g.addKey(keyID, key, false, suites)
}

// AddUnpublishedKey is AddKey for a key that opens requests but is not
// published (see SetPublished) from the moment it is added: a key added
// late in a rotation is never published, not even for an instant.
func (g *Gateway) AddUnpublishedKey(keyID byte, key kem.PrivateKey, suites ...SymmetricSuite) error {
	return g.addKey(keyID, key, true, suites)
}

func (g *Gateway) addKey(keyID byte, key kem.PrivateKey, hidden bool, suites []SymmetricSuite) error {
	if len(suites) == 0 {
		return fmt.Errorf("twoway: key %d: no symmetric suites", keyID)
	}
	gk := &gatewayKey{key: key, hidden: hidden, receivers: make(map[SymmetricSuite]*receiverBase)}
	for _, ss := range suites {
		if _, dup := gk.receivers[ss]; dup {
			continue
		}
		s, err := keySuite(key, ss.KDF, ss.AEAD)
		if err != nil {
			return fmt.Errorf("twoway: key %d: %w", keyID, err)
		}
		r := newReceiverBase(s, keyID, receiverKey{key: key}, g.rand)
		gk.receivers[ss] = &r
		gk.suites = append(gk.suites, ss)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.keys[keyID]; ok {
		return fmt.Errorf("twoway: key id %d is already in use", keyID)
	}
	g.keys[keyID] = gk
	return nil
}

// RemoveKey removes the key with keyID and reports whether there was one.
// Requests already being opened with it are not affected.
func (g *Gateway) RemoveKey(keyID byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.keys[keyID]
	delete(g.keys, keyID)
	return ok
}

// SetPublished sets whether the key with keyID is published by
// KeyConfigs and MarshalKeyConfigs (keys are published when added), and
// reports whether there is such a key. An unpublished key still opens
// requests: at the end of a rotation, clients that have not refetched the
// configuration keep working until the key is removed.
func (g *Gateway) SetPublished(keyID byte, published bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.keys[keyID]
	if ok {
		k.hidden = !published
	}
	return ok
}

// Published reports whether the key with keyID is published, and
// whether there is such a key.
func (g *Gateway) Published(keyID byte) (published, ok bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	k, ok := g.keys[keyID]
	return ok && !k.hidden, ok
}

// KeyConfigs returns the key configurations of the Gateway's published
// keys, ordered by key id.
func (g *Gateway) KeyConfigs() []KeyConfig {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]KeyConfig, 0, len(g.keys))
	for id, k := range g.keys {
		if k.hidden {
			continue
		}
		out = append(out, KeyConfig{
			KeyID:     id,
			KEM:       hpke.KEM(k.key.KEM()),
			PublicKey: k.key.PublicKeyBytes(),
			Suites:    slices.Clone(k.suites),
		})
	}
	slices.SortFunc(out, func(a, b KeyConfig) int { return int(a.KeyID) - int(b.KeyID) })
	return out
}

// MarshalKeyConfigs returns the application/ohttp-keys body that publishes
// the Gateway's keys.
func (g *Gateway) MarshalKeyConfigs() ([]byte, error) {
	return MarshalKeyConfigs(g.KeyConfigs())
}

// lookup returns the receiver for a request header.
func (g *Gateway) lookup(h RequestHeader) (*receiverBase, error) {
	g.mu.RLock()
	k, ok := g.keys[h.KeyID]
	var ids []byte
	if !ok {
		for id := range g.keys {
			ids = append(ids, id)
		}
	}
	g.mu.RUnlock()
	if !ok {
		slices.Sort(ids)
		return nil, fmt.Errorf("%w: the request is for key id %d; this gateway holds key ids %v", ErrUnknownKey, h.KeyID, ids)
	}
	if hpke.KEM(k.key.KEM()) != h.KemID {
		return nil, fmt.Errorf("%w: the request uses %v with key id %d, which is a %v key", ErrHeaderMismatch, kem.ID(h.KemID), h.KeyID, k.key.KEM())
	}
	r, ok := k.receivers[SymmetricSuite{KDF: h.KDFID, AEAD: h.AEADID}]
	if !ok {
		return nil, fmt.Errorf("%w: key id %d does not accept %s with %s", ErrUnsupportedSuite, h.KeyID, kdfName(h.KDFID), aeadName(h.AEADID))
	}
	return r, nil
}

// NewRequestOpener opens a request sealed to any of the Gateway's keys; see
// RequestReceiver.NewRequestOpener.
func (g *Gateway) NewRequestOpener(ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	return g.NewRequestOpenerContext(context.Background(), ct, mediaType, opts...)
}

// NewRequestOpenerContext is NewRequestOpener with a context that bounds the
// wait for the private key.
func (g *Gateway) NewRequestOpenerContext(ctx context.Context, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	cfg, h, err := readRequestHeader(ct, opts)
	if err != nil {
		return nil, err
	}
	r, err := g.lookup(h)
	if err != nil {
		return nil, err
	}
	return r.openRequest(ctx, ct, mediaType, cfg)
}

// NewMultiRequestOpener opens a one-to-many request whose key was
// encapsulated to any of the Gateway's keys; see
// MultiRequestReceiver.NewRequestOpener.
func (g *Gateway) NewMultiRequestOpener(encapKey []byte, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	return g.NewMultiRequestOpenerContext(context.Background(), encapKey, ct, mediaType, opts...)
}

// NewMultiRequestOpenerContext is NewMultiRequestOpener with a context that
// bounds the wait for the private key.
func (g *Gateway) NewMultiRequestOpenerContext(ctx context.Context, encapKey []byte, ct io.Reader, mediaType []byte, opts ...Option) (*RequestOpener, error) {
	cfg, h, err := parseEncapKeyHeader(encapKey, ct, opts)
	if err != nil {
		return nil, err
	}
	r, err := g.lookup(h)
	if err != nil {
		return nil, err
	}
	return r.openMulti(ctx, encapKey, ct, mediaType, cfg)
}
