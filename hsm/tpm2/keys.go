package tpm2

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Key is an ECC P-256, P-384 or P-521 key inside a TPM that performs
// Diffie-Hellman (TPM2_ECDH_ZGen) without revealing its private scalar.
//
// Key implements [kem.Exchanger] and Go's [ecdh.KeyExchanger], so
// crypto/hpke.NewDHKEMPrivateKey accepts it directly. It is safe for
// concurrent use.
//
// A Key comes from a TSS2 key file (the private part is a blob that only
// this TPM can load, under its storage root key) or from a persistent
// handle. A key with a blob is loaded into the TPM when first needed (keys
// from files: when opened, so a wrong file fails early) and stays loaded
// until Close (unless more keys are in use than the TPM has object
// slots for: then the least recently used ones are flushed and reloaded
// when needed). After a TPM restart or a lost connection it is loaded
// again from the blob.
type Key struct {
	c      *conn
	closed atomic.Bool

	kemID kem.ID
	pub   *ecdh.PublicKey

	// A key has a blob, a persistent handle, or both (a created key made
	// persistent); the persistent handle wins.
	blob       *keyfile.TPMKey
	parentID   Handle
	persistent atomic.Uint32 // Handle, 0 if none
	name       gotpm.TPM2BName

	auth    []byte // trimmed auth value, zeroed on Close
	timeout time.Duration
	// needsAuth: the key file records that the key has an auth value.
	needsAuth bool
	attrs     gotpm.TPMAObject
	pubArea   []byte // the marshalled TPMT_PUBLIC
}

// NeedsAuth reports whether the key's file records that the key has an
// auth value (TSS2 emptyAuth absent or false). A key opened by persistent
// handle does not say: NeedsAuth reports false for it.
func (k *Key) NeedsAuth() bool { return k.needsAuth }

// Attributes are the object attributes of a key that matter to its users
// (TPMA_OBJECT, TPM 2.0 Part 2, 8.3).
type Attributes struct {
	// FixedTPM: the key cannot leave this TPM (it was created in it,
	// not imported). FixedParent: it cannot be moved to another parent.
	FixedTPM, FixedParent bool
	// SensitiveDataOrigin: the TPM made the private key.
	SensitiveDataOrigin bool
	// UserWithAuth: its auth value authorizes its use.
	UserWithAuth bool
	// NoDA: failed authorizations do not count towards lockout.
	NoDA bool
	// Decrypt: it can do key agreement. Sign: it can also sign.
	Decrypt, Sign bool
}

// Attributes returns the key's object attributes.
func (k *Key) Attributes() Attributes {
	a := k.attrs
	return Attributes{
		FixedTPM: a.FixedTPM, FixedParent: a.FixedParent, SensitiveDataOrigin: a.SensitiveDataOrigin,
		UserWithAuth: a.UserWithAuth, NoDA: a.NoDA, Decrypt: a.Decrypt, Sign: a.SignEncrypt,
	}
}

// KEM returns the DHKEM this key serves: DHKEM(P-256, HKDF-SHA256),
// DHKEM(P-384, HKDF-SHA384) or DHKEM(P-521, HKDF-SHA512).
func (k *Key) KEM() kem.ID { return k.kemID }

// PublicKeyBytes returns the public key as an uncompressed SEC1 point (HPKE's
// SerializePublicKey). The caller may modify the returned slice.
func (k *Key) PublicKeyBytes() []byte { return k.pub.Bytes() }

// PublicKey returns the public key (crypto/ecdh.KeyExchanger).
func (k *Key) PublicKey() *ecdh.PublicKey { return k.pub }

// Curve returns the key's curve (crypto/ecdh.KeyExchanger).
func (k *Key) Curve() ecdh.Curve { return k.pub.Curve() }

// Handle returns the key's persistent handle, if it has one.
func (k *Key) Handle() (Handle, bool) {
	h := Handle(k.persistent.Load())
	return h, h != 0
}

// Close flushes the key from the TPM if this package loaded it, zeroes the
// auth value, and releases the connection (closing it if nothing else uses
// it). A persistent key stays in the TPM. Close is idempotent.
func (k *Key) Close() error {
	if k.closed.Swap(true) {
		return nil
	}
	c := k.c
	c.sem <- struct{}{}
	c.unload(k)
	clear(k.auth)
	<-c.sem
	return c.release()
}

// keyTemplate is the public template of an ECDH key: an unrestricted
// decryption key (no sign), created in and bound to this TPM
// (fixedTPM, fixedParent, sensitiveDataOrigin), usable with its auth value
// (userWithAuth), with scheme TPM_ALG_NULL so TPM2_ECDH_ZGen accepts it.
// It is subject to dictionary-attack protection (noDA clear).
func keyTemplate(curve gotpm.TPMECCCurve) gotpm.TPMTPublic {
	return gotpm.TPMTPublic{
		Type:    gotpm.TPMAlgECC,
		NameAlg: gotpm.TPMAlgSHA256,
		ObjectAttributes: gotpm.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			Decrypt:             true,
		},
		Parameters: gotpm.NewTPMUPublicParms(gotpm.TPMAlgECC, &gotpm.TPMSECCParms{
			Symmetric: gotpm.TPMTSymDefObject{Algorithm: gotpm.TPMAlgNull},
			Scheme:    gotpm.TPMTECCScheme{Scheme: gotpm.TPMAlgNull},
			CurveID:   curve,
			KDF:       gotpm.TPMTKDFScheme{Scheme: gotpm.TPMAlgNull},
		}),
		Unique: gotpm.NewTPMUPublicID(gotpm.TPMAlgECC, &gotpm.TPMSECCPoint{}),
	}
}

// tpmCurve returns the TPM's identifier of c, or 0 for a curve this
// package does not support.
func tpmCurve(c ecdh.Curve) gotpm.TPMECCCurve {
	switch c {
	case ecdh.P256():
		return gotpm.TPMECCNistP256
	case ecdh.P384():
		return gotpm.TPMECCNistP384
	case ecdh.P521():
		return gotpm.TPMECCNistP521
	}
	return 0
}

func curveOf(id gotpm.TPMECCCurve) ecdh.Curve {
	switch id {
	case gotpm.TPMECCNistP256:
		return ecdh.P256()
	case gotpm.TPMECCNistP384:
		return ecdh.P384()
	case gotpm.TPMECCNistP521:
		return ecdh.P521()
	}
	return nil
}

// checkPublic checks that pub is an ECC key usable for ECDH_ZGen (with
// allowSign, also one that can sign) and returns its public key.
func checkPublic(pub *gotpm.TPMTPublic, allowSign bool) (*ecdh.PublicKey, error) {
	if pub.Type != gotpm.TPMAlgECC {
		return nil, fmt.Errorf("%w: not an ECC key", ErrUnsupportedKey)
	}
	a := pub.ObjectAttributes
	switch {
	case a.Restricted && a.Decrypt:
		return nil, fmt.Errorf("%w: a storage key (restricted decrypt: a parent such as the SRK), not an ECDH key", ErrUnsupportedKey)
	case !a.Decrypt || a.Restricted:
		return nil, fmt.Errorf("%w: want an unrestricted decryption key", ErrUnsupportedKey)
	case a.SignEncrypt && !allowSign:
		return nil, fmt.Errorf("%w: the key can sign as well as decrypt (as tpm2-openssl and tpm2_create make EC keys); "+
			"twoway-hsm wants a decrypt-only key, and accepts this one only when asked: add allow-sign=true to the reference's query", ErrUnsupportedKey)
	}
	parms, err := pub.Parameters.ECCDetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	if s := parms.Scheme.Scheme; s != gotpm.TPMAlgNull && s != gotpm.TPMAlgECDH {
		return nil, fmt.Errorf("%w: scheme %v does not allow ECDH", ErrUnsupportedKey, s)
	}
	curve := curveOf(parms.CurveID)
	if curve == nil {
		return nil, fmt.Errorf("%w: curve %v", ErrUnsupportedCurve, parms.CurveID)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	id, _ := kem.IDForCurve(curve)
	size := id.DHSize()
	if len(point.X.Buffer) > size || len(point.Y.Buffer) > size {
		return nil, fmt.Errorf("%w: public point too long", ErrUnsupportedKey)
	}
	sec1 := make([]byte, 1+2*size)
	sec1[0] = 4
	copy(sec1[1+size-len(point.X.Buffer):1+size], point.X.Buffer)
	copy(sec1[1+2*size-len(point.Y.Buffer):], point.Y.Buffer)
	ep, err := curve.NewPublicKey(sec1)
	if err != nil {
		return nil, fmt.Errorf("%w: public point: %w", ErrUnsupportedKey, err)
	}
	return ep, nil
}

// newKey builds a Key around a public area and takes a connection
// reference. The Key owns auth, which is zeroed if newKey fails.
func (t *TPM) newKey(pub *gotpm.TPMTPublic, cfg *config, auth []byte) (*Key, error) {
	ep, err := checkPublic(pub, cfg.allowSign)
	if err != nil {
		clear(auth)
		return nil, err
	}
	name, err := gotpm.ObjectName(pub)
	if err != nil {
		clear(auth)
		return nil, err
	}
	id, _ := kem.IDForCurve(ep.Curve())
	t.c.addRef()
	return &Key{
		c: t.c, kemID: id, pub: ep, name: *name,
		auth: auth, timeout: cfg.timeout, attrs: pub.ObjectAttributes,
		pubArea: gotpm.Marshal(*pub),
	}, nil
}

// newBlobKey is newKey for a key just created or imported under the parent
// parentID: its key file holds pub and the wrapped private area priv.
func (t *TPM) newBlobKey(pub gotpm.TPM2BPublic, priv gotpm.TPM2BPrivate, parentID Handle, cfg *config, auth []byte) (*Key, error) {
	contents, err := pub.Contents()
	if err != nil {
		clear(auth)
		return nil, err
	}
	kf := newKeyFile(pub, priv, parentID, len(auth) == 0)
	k, err := t.newKey(contents, cfg, auth)
	if err != nil {
		return nil, err
	}
	k.blob, k.parentID, k.needsAuth = kf, parentID, !kf.EmptyAuth
	return k, nil
}

// underSRK runs op under the connection lock, with the connection's
// session and the parent that new keys go under (see srkID), and returns
// that parent's id.
func (t *TPM) underSRK(ctx context.Context, op func(s *session, p *parent) error) (Handle, error) {
	var id Handle
	err := t.c.do(ctx, func() error {
		s, err := t.c.ensureSession()
		if err != nil {
			return err
		}
		// Ask srkID, not the session: EvictHandle of the SRK leaves the
		// session (salted to it) valid but the parent to be chosen again.
		if id, err = t.c.srkID(); err != nil {
			return err
		}
		p, err := t.c.parentFor(id)
		if err != nil {
			return err
		}
		return op(s, p)
	})
	return id, err
}

// CreateKey creates a new ECDH key on curve (P-256, P-384, or P-521 where
// the TPM implements it) under the storage root key. The
// options WithAuth, WithAuthFile or WithAuthEnv set its auth value. Save
// the key with
// [Key.KeyFile] or [Key.WriteKeyFile], or make it persistent with
// [Key.Persist]; otherwise it is gone when closed.
func (t *TPM) CreateKey(ctx context.Context, curve ecdh.Curve, opts ...Option) (*Key, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: create key: %w", ErrClosed)
	}
	cfg := t.mergedConfig(opts)
	tc := tpmCurve(curve)
	if tc == 0 {
		return nil, fmt.Errorf("tpm2: create key: %w: %v", ErrUnsupportedCurve, curve)
	}
	auth, err := cfg.resolveAuth(false)
	if err != nil {
		return nil, fmt.Errorf("tpm2: create key: %w", err)
	}
	var rsp *gotpm.CreateResponse
	parentID, err := t.underSRK(ctx, func(s *session, p *parent) error {
		have, err := t.c.curves()
		if err != nil {
			return err
		}
		if !slices.Contains(have, curve) {
			return fmt.Errorf("%w: the TPM does not implement %v", ErrUnsupportedCurve, curve)
		}
		// The auth value travels in inSensitive, the first parameter,
		// which the session encrypts.
		// TPM2_Create needs a free object slot too.
		return t.c.withObjectMemory(nil, func() error {
			s.use(nil, true, false)
			var err error
			rsp, err = gotpm.Create{
				ParentHandle: p.authHandle(s),
				InSensitive: gotpm.TPM2BSensitiveCreate{Sensitive: &gotpm.TPMSSensitiveCreate{
					UserAuth: gotpm.TPM2BAuth{Buffer: auth},
				}},
				InPublic: gotpm.New2B(keyTemplate(tc)),
			}.Execute(t.c.tr)
			return err
		})
	})
	if err != nil {
		clear(auth)
		return nil, fmt.Errorf("tpm2: create key: %w", err)
	}
	k, err := t.newBlobKey(rsp.OutPublic, rsp.OutPrivate, parentID, cfg, auth)
	if err != nil {
		return nil, fmt.Errorf("tpm2: create key: %w", err)
	}
	return k, nil
}

// ImportKey wraps an existing software key (P-256, P-384 or P-521) for this
// TPM with TPM2_Import under the storage root key (an outer duplication
// wrapper keyed to the SRK, no inner wrapper) and returns it as a Key like
// any other, to be saved with [Key.KeyFile]. Use it to migrate keys into a
// TPM and for tests that need known key bytes.
//
// An imported key cannot carry fixedTPM or sensitiveDataOrigin, since it
// existed outside the TPM; its empty authPolicy still makes it impossible to
// duplicate out of the TPM again. The caller should destroy its software
// copy.
func (t *TPM) ImportKey(ctx context.Context, priv *ecdh.PrivateKey, opts ...Option) (*Key, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: import key: %w", ErrClosed)
	}
	cfg := t.mergedConfig(opts)
	tc := tpmCurve(priv.Curve())
	if tc == 0 {
		return nil, fmt.Errorf("tpm2: import key: %w: %v", ErrUnsupportedCurve, priv.Curve())
	}
	auth, err := cfg.resolveAuth(false)
	if err != nil {
		return nil, fmt.Errorf("tpm2: import key: %w", err)
	}
	pub := keyTemplate(tc)
	pub.ObjectAttributes.FixedTPM = false
	pub.ObjectAttributes.FixedParent = false
	pub.ObjectAttributes.SensitiveDataOrigin = false
	point := priv.PublicKey().Bytes() // 0x04 | X | Y, each padded to the field size
	n := len(point) / 2
	pub.Unique = gotpm.NewTPMUPublicID(gotpm.TPMAlgECC, &gotpm.TPMSECCPoint{
		X: gotpm.TPM2BECCParameter{Buffer: point[1 : 1+n]},
		Y: gotpm.TPM2BECCParameter{Buffer: point[1+n:]},
	})
	name, err := gotpm.ObjectName(&pub)
	if err != nil {
		clear(auth)
		return nil, fmt.Errorf("tpm2: import key: %w", err)
	}
	scalar := priv.Bytes()
	sens := gotpm.Marshal(gotpm.TPMTSensitive{
		SensitiveType: gotpm.TPMAlgECC,
		AuthValue:     gotpm.TPM2BAuth{Buffer: auth},
		Sensitive:     gotpm.NewTPMUSensitiveComposite(gotpm.TPMAlgECC, &gotpm.TPM2BECCParameter{Buffer: scalar}),
	})
	clear(scalar)
	defer clear(sens)

	var out *gotpm.ImportResponse
	parentID, err := t.underSRK(ctx, func(s *session, p *parent) error {
		ek, err := gotpm.ImportEncapsulationKey(&p.pub)
		if err != nil {
			return fmt.Errorf("%w: SRK cannot wrap: %w", ErrUnsupportedKey, err)
		}
		dup, seed, err := gotpm.CreateDuplicate(rand.Reader, ek, name.Buffer, sens)
		if err != nil {
			return err
		}
		return t.c.withObjectMemory(nil, func() error {
			s.use(nil, false, false)
			var err error
			out, err = gotpm.Import{
				ParentHandle: p.authHandle(s),
				ObjectPublic: gotpm.New2B(pub),
				Duplicate:    gotpm.TPM2BPrivate{Buffer: dup},
				InSymSeed:    gotpm.TPM2BEncryptedSecret{Buffer: seed},
				Symmetric:    gotpm.TPMTSymDef{Algorithm: gotpm.TPMAlgNull},
			}.Execute(t.c.tr)
			return err
		})
	})
	if err != nil {
		clear(auth)
		return nil, fmt.Errorf("tpm2: import key: %w", err)
	}
	k, err := t.newBlobKey(gotpm.New2B(pub), out.OutPrivate, parentID, cfg, auth)
	if err != nil {
		return nil, fmt.Errorf("tpm2: import key: %w", err)
	}
	return k, nil
}

// OpenHandle opens the ECDH key stored at persistent handle h. The options
// WithAuth, WithAuthFile or WithAuthEnv give its auth value. Errors wrap
// [ErrKeyNotFound] when nothing is stored there and [ErrUnsupportedKey]
// when the object there is not an ECDH key.
func (t *TPM) OpenHandle(ctx context.Context, h Handle, opts ...Option) (*Key, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: open %v: %w", h, ErrClosed)
	}
	if !h.IsPersistent() {
		return nil, fmt.Errorf("tpm2: open %v: %w: not a persistent handle", h, ErrInvalidKeyRef)
	}
	cfg := t.mergedConfig(opts)
	auth, err := cfg.resolveAuth(false)
	if err != nil {
		return nil, fmt.Errorf("tpm2: open %v: %w", h, err)
	}
	var pub *gotpm.TPMTPublic
	err = t.c.do(ctx, func() error {
		var err error
		pub, _, err = t.c.readPublic(h)
		return err
	})
	if err != nil {
		clear(auth)
		return nil, fmt.Errorf("tpm2: open %v: %w", h, err)
	}
	k, err := t.newKey(pub, cfg, auth)
	if err != nil {
		return nil, fmt.Errorf("tpm2: open %v: %w", h, err)
	}
	k.persistent.Store(uint32(h))
	return k, nil
}

// readPublic reads the public area at a persistent handle.
func (c *conn) readPublic(h Handle) (*gotpm.TPMTPublic, gotpm.TPM2BName, error) {
	rsp, err := gotpm.ReadPublic{ObjectHandle: gotpm.TPMHandle(h)}.Execute(c.tr)
	if err != nil {
		if errors.Is(err, gotpm.TPMRCHandle) {
			return nil, gotpm.TPM2BName{}, fmt.Errorf("%w: %v", ErrKeyNotFound, h)
		}
		return nil, gotpm.TPM2BName{}, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, gotpm.TPM2BName{}, err
	}
	return pub, rsp.Name, nil
}

// PersistentHandles lists the owner-hierarchy persistent handles in use
// (keys of this package, the SRK, and any other tool's objects).
func (t *TPM) PersistentHandles(ctx context.Context) ([]Handle, error) {
	if t.closed.Load() {
		return nil, fmt.Errorf("tpm2: list persistent handles: %w", ErrClosed)
	}
	var out []Handle
	err := t.c.do(ctx, func() error {
		hs, err := t.c.handles(gotpm.TPMHTPersistent)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, h := range hs {
			if Handle(h).IsPersistent() {
				out = append(out, Handle(h))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tpm2: list persistent handles: %w", err)
	}
	return out, nil
}

// EvictHandle deletes the object at persistent handle h
// (TPM2_EvictControl). It needs the owner hierarchy without a password, as it
// usually is. Keys opened by h
// stop working. Errors wrap [ErrKeyNotFound] when h is empty.
func (t *TPM) EvictHandle(ctx context.Context, h Handle) error {
	if t.closed.Load() {
		return fmt.Errorf("tpm2: evict %v: %w", h, ErrClosed)
	}
	if !h.IsPersistent() {
		return fmt.Errorf("tpm2: evict %v: %w: not a persistent handle", h, ErrInvalidKeyRef)
	}
	err := t.c.do(ctx, func() error {
		_, name, err := t.c.readPublic(h)
		if err != nil {
			return err
		}
		if err := evictControl(t.c, gotpm.TPMHandle(h), name, h); err != nil {
			return err
		}
		delete(t.c.parents, h)
		if t.c.srk == h { // the SRK itself: choose again next time
			t.c.srk = 0
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tpm2: evict %v: %w", h, err)
	}
	return nil
}

// Persist makes the key persistent at handle h (TPM2_EvictControl), so it
// can be opened with [TPM.OpenHandle] or a "tpm2:handle=..." reference
// without its key file. It needs the owner hierarchy without a password (see
// [EvictHandle]).
// Errors wrap [ErrHandleInUse] when h is taken. TPMs have room for only a
// few persistent objects (often 7); prefer key files.
func (k *Key) Persist(ctx context.Context, h Handle) error {
	if k.closed.Load() {
		return fmt.Errorf("tpm2: persist: %w", ErrClosed)
	}
	if !h.IsPersistent() {
		return fmt.Errorf("tpm2: persist: %w: %v is not a persistent handle", ErrInvalidKeyRef, h)
	}
	if cur, ok := k.Handle(); ok {
		if cur == h {
			return nil
		}
		return fmt.Errorf("tpm2: persist: key is already persistent at %v", cur)
	}
	c := k.c
	err := c.do(ctx, func() error {
		obj, err := c.ensureLoaded(k)
		if err != nil {
			return err
		}
		if err := evictControl(c, obj, k.name, h); err != nil {
			return err
		}
		// From now on use the persistent copy; the transient one can go.
		c.unload(k)
		k.persistent.Store(uint32(h))
		return nil
	})
	if err != nil {
		return fmt.Errorf("tpm2: persist at %v: %w", h, err)
	}
	return nil
}

// evictControl runs TPM2_EvictControl with owner authorization: it makes
// the loaded object obj persistent at h, or, when obj is h, evicts it.
func evictControl(c *conn, obj gotpm.TPMHandle, name gotpm.TPM2BName, h Handle) error {
	_, err := gotpm.EvictControl{
		Auth:             gotpm.AuthHandle{Handle: gotpm.TPMRHOwner, Auth: gotpm.PasswordAuth(nil)},
		ObjectHandle:     gotpm.NamedHandle{Handle: obj, Name: name},
		PersistentHandle: gotpm.TPMHandle(h),
	}.Execute(c.tr)
	switch {
	case errors.Is(err, gotpm.TPMRCNVDefined):
		return fmt.Errorf("%w: %v", ErrHandleInUse, h)
	case errors.Is(err, gotpm.TPMRCAuthFail), errors.Is(err, gotpm.TPMRCBadAuth):
		return fmt.Errorf("owner %w: %w", ErrAuthFail, err)
	}
	return err
}

// ensureLoaded returns the handle where the key is in the TPM, loading it
// from its blob under its parent if needed. The caller holds the
// connection lock.
func (c *conn) ensureLoaded(k *Key) (gotpm.TPMHandle, error) {
	if h, ok := k.Handle(); ok {
		return gotpm.TPMHandle(h), nil
	}
	c.tick++
	if lk := c.loaded[k]; lk != nil {
		lk.lastUse = c.tick
		return lk.handle, nil
	}
	s, err := c.ensureSession()
	if err != nil {
		return 0, err
	}
	p, err := c.parentFor(k.parentID)
	if err != nil {
		return 0, err
	}
	// Keep within three transient objects (SRK included): swtpm and most
	// TPMs have three slots, and the kernel resource manager allows three
	// per open file and fails the syscall (ENOMEM) beyond that.
	c.makeRoom(k, 1)
	var rsp *gotpm.LoadResponse
	err = c.withObjectMemory(k, func() error {
		s.use(nil, false, false)
		var err error
		rsp, err = gotpm.Load{
			ParentHandle: p.authHandle(s),
			InPrivate:    k.blob.Privkey,
			InPublic:     k.blob.Pubkey,
		}.Execute(c.tr)
		return err
	})
	if err != nil {
		if errors.Is(err, gotpm.TPMRCIntegrity) {
			return 0, fmt.Errorf("%w: the TPM cannot unwrap the key (TPM2_Load): %w", ErrWrongTPM, err)
		}
		return 0, fmt.Errorf("loading key: %w", err)
	}
	if !bytes.Equal(rsp.Name.Buffer, k.name.Buffer) {
		c.flush(rsp.ObjectHandle)
		return 0, fmt.Errorf("%w: loaded key's name does not match its public area", ErrInvalidKeyFile)
	}
	c.loaded[k] = &loadedKey{handle: rsp.ObjectHandle, lastUse: c.tick}
	return rsp.ObjectHandle, nil
}

// authorize readies k for a command that its auth value authorizes: it
// refuses a key whose file records an auth value it was opened without
// (trying would cost a dictionary-attack attempt, in vain), and returns
// the key's handle, loaded if need be, and the session to authorize it
// with. The caller holds the connection lock.
func (c *conn) authorize(k *Key) (gotpm.TPMHandle, *session, error) {
	if k.needsAuth && len(k.auth) == 0 {
		return 0, nil, fmt.Errorf("%w and it was opened without one: its key file records one; not trying, so that no attempt counts towards the TPM's lockout", ErrAuthRequired)
	}
	h, err := c.ensureLoaded(k)
	if err != nil {
		return 0, nil, err
	}
	s, err := c.ensureSession()
	if err != nil {
		return 0, nil, err
	}
	return h, s, nil
}

// mergedConfig applies per-call options on top of the TPM's own.
func (t *TPM) mergedConfig(opts []Option) *config {
	cfg := *t.cfg
	cfg.perKey() // per key, never inherited
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return &cfg
}
