package tpm2

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	gotpm "github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// errSessionDesync means a response failed the session's HMAC check: the
// session state on both sides no longer agrees (or the response was
// tampered with). The session is dropped and a new one started.
var errSessionDesync = errors.New("tpm2: response HMAC check failed")

const (
	sessionHash      = gotpm.TPMAlgSHA256
	sessionNonceSize = sha256.Size
	sessionAESBits   = 128
)

// session is one salted, unbound HMAC session (TPM 2.0 Part 1, 19.6) that
// lives as long as the connection and serves every command that needs
// authorization or parameter encryption. It implements go-tpm's
// gotpm.Session.
//
// go-tpm's own HMAC session fixes the authorized entity's auth value when it
// is started, so it would take one TPM session per key; TPMs keep as few as
// three sessions loaded. This one is told before each command which auth
// value to use and which parameters to encrypt (use), so one session serves
// all keys on a connection. It is not safe for concurrent use; the
// connection lock serialises it.
//
// Its session key is derived from a salt encrypted to the storage root key
// (KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller)), so an observer of
// the TPM bus cannot compute the HMAC or parameter-encryption keys.
type session struct {
	handle      gotpm.TPMHandle
	sessionKey  []byte
	nonceCaller []byte
	nonceTPM    []byte

	// Per command, set by use.
	auth     []byte            // auth value of the entity this session authorizes
	attrs    gotpm.TPMASession // continueSession plus the encrypt/decrypt bits
	captured []byte            // the decrypted response parameter, see Decrypt
}

// startSession starts a salted HMAC session with AES-128-CFB parameter
// encryption, salted to the public key of the loaded object saltKey.
func startSession(t transport.TPM, saltKey gotpm.TPMHandle, saltPub *gotpm.TPMTPublic) (*session, error) {
	ek, err := gotpm.ImportEncapsulationKey(saltPub)
	if err != nil {
		return nil, fmt.Errorf("tpm2: session salt key: %w", err)
	}
	salt, encSalt, err := gotpm.CreateEncryptedSalt(rand.Reader, ek)
	if err != nil {
		return nil, fmt.Errorf("tpm2: session salt: %w", err)
	}
	defer clear(salt)
	s := &session{nonceCaller: make([]byte, sessionNonceSize)}
	if _, err := rand.Read(s.nonceCaller); err != nil {
		return nil, err
	}
	rsp, err := gotpm.StartAuthSession{
		TPMKey:        saltKey,
		Bind:          gotpm.TPMRHNull,
		NonceCaller:   gotpm.TPM2BNonce{Buffer: s.nonceCaller},
		EncryptedSalt: gotpm.TPM2BEncryptedSecret{Buffer: encSalt},
		SessionType:   gotpm.TPMSEHMAC,
		Symmetric: gotpm.TPMTSymDef{
			Algorithm: gotpm.TPMAlgAES,
			KeyBits:   gotpm.NewTPMUSymKeyBits(gotpm.TPMAlgAES, gotpm.TPMKeyBits(sessionAESBits)),
			Mode:      gotpm.NewTPMUSymMode(gotpm.TPMAlgAES, gotpm.TPMAlgCFB),
		},
		AuthHash: sessionHash,
	}.Execute(t)
	if err != nil {
		return nil, err
	}
	s.handle = gotpm.TPMHandle(rsp.SessionHandle.HandleValue())
	s.nonceTPM = rsp.NonceTPM.Buffer
	s.sessionKey = gotpm.KDFa(crypto.SHA256, salt, "ATH", s.nonceTPM, s.nonceCaller, sha256.Size*8)
	return s, nil
}

// use prepares the session for the next command: the auth value of the
// entity it authorizes (nil for none), and whether to encrypt the first
// command parameter (in) and the first response parameter (out; its
// plaintext is then captured, see Decrypt).
func (s *session) use(auth []byte, in, out bool) {
	s.auth = auth
	s.attrs = gotpm.TPMASession{ContinueSession: true, Decrypt: in, Encrypt: out}
	s.clearCaptured()
}

func (s *session) clearCaptured() {
	clear(s.captured)
	s.captured = s.captured[:0]
}

// destroy zeroes the session's secrets. The TPM side is flushed by the
// connection.
func (s *session) destroy() {
	clear(s.sessionKey)
	s.clearCaptured()
	s.auth = nil
}

// Init implements gotpm.Session; the session is started by startSession.
func (s *session) Init(transport.TPM) error { return nil }

// CleanupFailure implements gotpm.Session. A failed command leaves a
// continued session loaded with its nonceTPM unchanged, so there is
// nothing to do.
func (s *session) CleanupFailure(transport.TPM) error { return nil }

// NonceTPM implements gotpm.Session.
func (s *session) NonceTPM() gotpm.TPM2BNonce { return gotpm.TPM2BNonce{Buffer: s.nonceTPM} }

// NewNonceCaller implements gotpm.Session.
func (s *session) NewNonceCaller() error {
	_, err := rand.Read(s.nonceCaller)
	return err
}

// hmacKey returns sessionKey || authValue in a fresh slice the caller zeroes.
func (s *session) hmacKey() []byte {
	k := make([]byte, 0, len(s.sessionKey)+len(s.auth))
	return append(append(k, s.sessionKey...), s.auth...)
}

// hmac returns the session HMAC of Part 1, 19.6.5 and 19.6.17:
// HMAC(sessionKey || authValue, pHash || nonceNewer || nonceOlder ||
// sessionAttributes), where pHash is the SHA-256 of the given parts.
func (s *session) hmac(nonceNewer, nonceOlder []byte, attrs gotpm.TPMASession, pHashParts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range pHashParts {
		h.Write(p)
	}
	key := s.hmacKey()
	defer clear(key)
	m := hmac.New(sha256.New, key)
	m.Write(h.Sum(nil))
	m.Write(nonceNewer)
	m.Write(nonceOlder)
	m.Write([]byte{sessionAttrByte(attrs)})
	return m.Sum(nil)
}

// sessionAttrByte marshals TPMA_SESSION (Part 2, 8.4). gotpm.Marshal gives
// the same byte, but by reflection: some 25 µs and 68 allocations, twice
// per command.
func sessionAttrByte(a gotpm.TPMASession) byte {
	var b byte
	for bit, set := range [8]bool{a.ContinueSession, a.AuditExclusive, a.AuditReset, false, false, a.Decrypt, a.Encrypt, a.Audit} {
		if set {
			b |= 1 << bit
		}
	}
	return b
}

// Authorize implements gotpm.Session: the command HMAC of Part 1, 19.6.5,
// over cpHash = SHA-256(commandCode || names || parameters).
func (s *session) Authorize(cc gotpm.TPMCC, parms, addNonces []byte, names []gotpm.TPM2BName, _ int) (*gotpm.TPMSAuthCommand, error) {
	if len(addNonces) != 0 {
		return nil, errors.New("tpm2: session: extra sessions are not supported")
	}
	parts := [][]byte{binary.BigEndian.AppendUint32(nil, uint32(cc))}
	for _, n := range names {
		parts = append(parts, n.Buffer)
	}
	parts = append(parts, parms)
	return &gotpm.TPMSAuthCommand{
		Handle:        s.handle,
		Nonce:         gotpm.TPM2BNonce{Buffer: s.nonceCaller},
		Attributes:    s.attrs,
		Authorization: gotpm.TPM2BData{Buffer: s.hmac(s.nonceCaller, s.nonceTPM, s.attrs, parts...)},
	}, nil
}

// Validate implements gotpm.Session: it records the new nonceTPM and checks
// the response HMAC over rpHash = SHA-256(responseCode || commandCode ||
// parameters), the parameters as sent (still encrypted).
func (s *session) Validate(rc gotpm.TPMRC, cc gotpm.TPMCC, parms []byte, _ []gotpm.TPM2BName, _ int, auth *gotpm.TPMSAuthResponse) error {
	s.nonceTPM = auth.Nonce.Buffer
	var codes [8]byte
	binary.BigEndian.PutUint32(codes[:4], uint32(rc))
	binary.BigEndian.PutUint32(codes[4:], uint32(cc))
	want := s.hmac(s.nonceTPM, s.nonceCaller, auth.Attributes, codes[:], parms)
	if !hmac.Equal(want, auth.Authorization.Buffer) {
		return errSessionDesync
	}
	if !auth.Attributes.ContinueSession {
		return fmt.Errorf("%w: the TPM closed the session", errSessionDesync)
	}
	return nil
}

// IsEncryption implements gotpm.Session: the TPM encrypts the first response
// parameter.
func (s *session) IsEncryption() bool { return s.attrs.Encrypt }

// IsDecryption implements gotpm.Session: the TPM decrypts the first command
// parameter.
func (s *session) IsDecryption() bool { return s.attrs.Decrypt }

// cfb en- or decrypts p in place with AES-128-CFB, keyed as Part 1, 21.3
// says: key and IV from KDFa(SHA-256, sessionKey || authValue, "CFB",
// nonceNewer, nonceOlder).
func (s *session) cfb(decrypt bool, nonceNewer, nonceOlder, p []byte) error {
	key := s.hmacKey()
	defer clear(key)
	const keyLen = sessionAESBits / 8
	kiv := gotpm.KDFa(crypto.SHA256, key, "CFB", nonceNewer, nonceOlder, (keyLen+aes.BlockSize)*8)
	defer clear(kiv)
	blk, err := aes.NewCipher(kiv[:keyLen])
	if err != nil {
		return err
	}
	iv := kiv[keyLen:]
	if decrypt {
		cipher.NewCFBDecrypter(blk, iv).XORKeyStream(p, p) //nolint:staticcheck // CFB is what the TPM speaks
	} else {
		cipher.NewCFBEncrypter(blk, iv).XORKeyStream(p, p) //nolint:staticcheck // CFB is what the TPM speaks
	}
	return nil
}

// Encrypt implements gotpm.Session: it encrypts the first command parameter
// (the buffer of a TPM2B) in place when the session decrypts commands.
func (s *session) Encrypt(parameter []byte) error {
	if !s.attrs.Decrypt {
		return nil
	}
	return s.cfb(false, s.nonceCaller, s.nonceTPM, parameter)
}

// Decrypt implements gotpm.Session: it decrypts the first response parameter
// in place when the session encrypts responses.
//
// Only TPM2_ECDH_ZGen has its response encrypted. The plaintext - a
// TPMS_ECC_POINT whose X coordinate is the shared secret - is moved into
// s.captured, which this package zeroes after use, and the coordinates left
// for go-tpm to parse are overwritten with zeros (their size fields are
// kept, so parsing succeeds). The shared point thus never lingers in
// buffers this package cannot clear.
func (s *session) Decrypt(parameter []byte) error {
	if !s.attrs.Encrypt {
		return nil
	}
	if err := s.cfb(true, s.nonceTPM, s.nonceCaller, parameter); err != nil {
		return err
	}
	s.captured = append(s.captured[:0], parameter...)
	// Zero the coordinates in go-tpm's copy: X.size | X | Y.size | Y.
	p := parameter
	for range 2 {
		if len(p) < 2 {
			break
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if n > len(p) {
			n = len(p)
		}
		clear(p[:n])
		p = p[n:]
	}
	return nil
}

// Handle implements gotpm.Session.
func (s *session) Handle() gotpm.TPMHandle { return s.handle }

var _ gotpm.Session = (*session)(nil)
