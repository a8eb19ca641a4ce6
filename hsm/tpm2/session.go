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

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// errSessionDesync means a response failed the session's HMAC check: the
// session state on both sides no longer agrees (or the response was
// tampered with). The session is dropped and a new one started.
var errSessionDesync = errors.New("tpm2: response HMAC check failed")

const (
	sessionHash      = tpm2.TPMAlgSHA256
	sessionNonceSize = sha256.Size
	sessionAESBits   = 128
)

// session is one salted, unbound HMAC session (TPM 2.0 Part 1, 19.6) that
// lives as long as the connection and serves every command that needs
// authorization or parameter encryption. It implements go-tpm's
// tpm2.Session.
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
	handle      tpm2.TPMHandle
	sessionKey  []byte
	nonceCaller []byte
	nonceTPM    []byte

	// Per command, set by use.
	auth     []byte           // auth value of the entity this session authorizes
	attrs    tpm2.TPMASession // continueSession plus the encrypt/decrypt bits
	capture  bool             // capture the decrypted ECC point, see Decrypt
	captured []byte
}

// startSession starts a salted HMAC session with AES-128-CFB parameter
// encryption, salted to the public key of the loaded object saltKey.
func startSession(t transport.TPM, saltKey tpm2.TPMHandle, saltPub *tpm2.TPMTPublic) (*session, error) {
	ek, err := tpm2.ImportEncapsulationKey(saltPub)
	if err != nil {
		return nil, fmt.Errorf("tpm2: session salt key: %w", err)
	}
	salt, encSalt, err := tpm2.CreateEncryptedSalt(rand.Reader, ek)
	if err != nil {
		return nil, fmt.Errorf("tpm2: session salt: %w", err)
	}
	defer clear(salt)
	s := &session{nonceCaller: make([]byte, sessionNonceSize)}
	if _, err := rand.Read(s.nonceCaller); err != nil {
		return nil, err
	}
	rsp, err := tpm2.StartAuthSession{
		TPMKey:        saltKey,
		Bind:          tpm2.TPMRHNull,
		NonceCaller:   tpm2.TPM2BNonce{Buffer: s.nonceCaller},
		EncryptedSalt: tpm2.TPM2BEncryptedSecret{Buffer: encSalt},
		SessionType:   tpm2.TPMSEHMAC,
		Symmetric: tpm2.TPMTSymDef{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(sessionAESBits)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		AuthHash: sessionHash,
	}.Execute(t)
	if err != nil {
		return nil, err
	}
	s.handle = tpm2.TPMHandle(rsp.SessionHandle.HandleValue())
	s.nonceTPM = rsp.NonceTPM.Buffer
	s.sessionKey = tpm2.KDFa(crypto.SHA256, salt, "ATH", s.nonceTPM, s.nonceCaller, sha256.Size*8)
	return s, nil
}

// use prepares the session for the next command: the auth value of the
// entity it authorizes (nil for none), whether to encrypt the first command
// parameter (in) and the first response parameter (out), and whether to
// capture the decrypted response point (see Decrypt).
func (s *session) use(auth []byte, in, out, capture bool) {
	s.auth = auth
	s.attrs = tpm2.TPMASession{ContinueSession: true, Decrypt: in, Encrypt: out}
	s.capture = capture && out
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

// Init implements tpm2.Session; the session is started by startSession.
func (s *session) Init(transport.TPM) error { return nil }

// CleanupFailure implements tpm2.Session. A failed command leaves a
// continued session loaded with its nonceTPM unchanged, so there is
// nothing to do.
func (s *session) CleanupFailure(transport.TPM) error { return nil }

// NonceTPM implements tpm2.Session.
func (s *session) NonceTPM() tpm2.TPM2BNonce { return tpm2.TPM2BNonce{Buffer: s.nonceTPM} }

// NewNonceCaller implements tpm2.Session.
func (s *session) NewNonceCaller() error {
	_, err := rand.Read(s.nonceCaller)
	return err
}

// hmacKey returns sessionKey || authValue in a fresh slice the caller zeroes.
func (s *session) hmacKey() []byte {
	k := make([]byte, 0, len(s.sessionKey)+len(s.auth))
	return append(append(k, s.sessionKey...), s.auth...)
}

func (s *session) mac(key, pHash, nonceNewer, nonceOlder []byte, attrs tpm2.TPMASession) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(pHash)
	m.Write(nonceNewer)
	m.Write(nonceOlder)
	m.Write([]byte{sessionAttrByte(attrs)})
	return m.Sum(nil)
}

// sessionAttrByte marshals TPMA_SESSION (Part 2, 8.4).
func sessionAttrByte(a tpm2.TPMASession) byte {
	var b byte
	if a.ContinueSession {
		b |= 1 << 0
	}
	if a.AuditExclusive {
		b |= 1 << 1
	}
	if a.AuditReset {
		b |= 1 << 2
	}
	if a.Decrypt {
		b |= 1 << 5
	}
	if a.Encrypt {
		b |= 1 << 6
	}
	if a.Audit {
		b |= 1 << 7
	}
	return b
}

// Authorize implements tpm2.Session: the command HMAC of Part 1, 19.6.5,
// over cpHash = SHA-256(commandCode || names || parameters).
func (s *session) Authorize(cc tpm2.TPMCC, parms, addNonces []byte, names []tpm2.TPM2BName, _ int) (*tpm2.TPMSAuthCommand, error) {
	if len(addNonces) != 0 {
		return nil, errors.New("tpm2: session: extra sessions are not supported")
	}
	h := sha256.New()
	var ccb [4]byte
	binary.BigEndian.PutUint32(ccb[:], uint32(cc))
	h.Write(ccb[:])
	for _, n := range names {
		h.Write(n.Buffer)
	}
	h.Write(parms)
	key := s.hmacKey()
	defer clear(key)
	return &tpm2.TPMSAuthCommand{
		Handle:        s.handle,
		Nonce:         tpm2.TPM2BNonce{Buffer: s.nonceCaller},
		Attributes:    s.attrs,
		Authorization: tpm2.TPM2BData{Buffer: s.mac(key, h.Sum(nil), s.nonceCaller, s.nonceTPM, s.attrs)},
	}, nil
}

// Validate implements tpm2.Session: it records the new nonceTPM and checks
// the response HMAC over rpHash = SHA-256(responseCode || commandCode ||
// parameters), the parameters as sent (still encrypted).
func (s *session) Validate(rc tpm2.TPMRC, cc tpm2.TPMCC, parms []byte, _ []tpm2.TPM2BName, _ int, auth *tpm2.TPMSAuthResponse) error {
	s.nonceTPM = auth.Nonce.Buffer
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(rc))
	binary.BigEndian.PutUint32(b[4:], uint32(cc))
	h.Write(b[:])
	h.Write(parms)
	key := s.hmacKey()
	defer clear(key)
	want := s.mac(key, h.Sum(nil), s.nonceTPM, s.nonceCaller, auth.Attributes)
	if !hmac.Equal(want, auth.Authorization.Buffer) {
		return errSessionDesync
	}
	if !auth.Attributes.ContinueSession {
		return fmt.Errorf("%w: the TPM closed the session", errSessionDesync)
	}
	return nil
}

// IsEncryption implements tpm2.Session: the TPM encrypts the first response
// parameter.
func (s *session) IsEncryption() bool { return s.attrs.Encrypt }

// IsDecryption implements tpm2.Session: the TPM decrypts the first command
// parameter.
func (s *session) IsDecryption() bool { return s.attrs.Decrypt }

// cfb returns the AES-128-CFB stream key and IV of Part 1, 21.3:
// KDFa(SHA-256, sessionKey || authValue, "CFB", nonceNewer, nonceOlder).
func (s *session) cfb(nonceNewer, nonceOlder []byte) (cipher.Block, []byte, error) {
	key := s.hmacKey()
	defer clear(key)
	const keyLen = sessionAESBits / 8
	kiv := tpm2.KDFa(crypto.SHA256, key, "CFB", nonceNewer, nonceOlder, (keyLen+aes.BlockSize)*8)
	defer clear(kiv)
	blk, err := aes.NewCipher(kiv[:keyLen])
	if err != nil {
		return nil, nil, err
	}
	iv := make([]byte, aes.BlockSize)
	copy(iv, kiv[keyLen:])
	return blk, iv, nil
}

// Encrypt implements tpm2.Session: it encrypts the first command parameter
// (the buffer of a TPM2B) in place when the session decrypts commands.
func (s *session) Encrypt(parameter []byte) error {
	if !s.attrs.Decrypt {
		return nil
	}
	blk, iv, err := s.cfb(s.nonceCaller, s.nonceTPM)
	if err != nil {
		return err
	}
	cipher.NewCFBEncrypter(blk, iv).XORKeyStream(parameter, parameter) //nolint:staticcheck // CFB is what the TPM speaks
	return nil
}

// Decrypt implements tpm2.Session: it decrypts the first response parameter
// in place when the session encrypts responses.
//
// With capture set (TPM2_ECDH_ZGen), the plaintext - a TPMS_ECC_POINT whose
// X coordinate is the shared secret - is moved into s.captured, which this
// package zeroes after use, and the coordinates left for go-tpm to parse are
// overwritten with zeros (their size fields are kept, so parsing succeeds).
// The shared point thus never lingers in buffers this package cannot clear.
func (s *session) Decrypt(parameter []byte) error {
	if !s.attrs.Encrypt {
		return nil
	}
	blk, iv, err := s.cfb(s.nonceTPM, s.nonceCaller)
	if err != nil {
		return err
	}
	cipher.NewCFBDecrypter(blk, iv).XORKeyStream(parameter, parameter) //nolint:staticcheck // CFB is what the TPM speaks
	if !s.capture {
		return nil
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

// Handle implements tpm2.Session.
func (s *session) Handle() tpm2.TPMHandle { return s.handle }

var _ tpm2.Session = (*session)(nil)
