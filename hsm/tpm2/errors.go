package tpm2

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	gotpm "github.com/google/go-tpm/tpm2"

	"github.com/twoway-hsm/twoway-hsm/kem"
)

// Sentinel errors. Every error this package returns wraps at most one of
// them (but for [ErrNoAnswer] and [ErrNotTPM], which come with
// [ErrTPMUnavailable]; and, for a TPM response code, go-tpm's TPMRC
// itself), so callers can test with [errors.Is]:
//
//	if errors.Is(err, tpm2.ErrAuthFail) { ... }
//
// Errors for a malformed peer public key wrap [kem.ErrInvalidPublicKey]
// instead. No error message ever contains an auth value or a shared secret.
var (
	// ErrTPMUnavailable means the TPM could not be reached: the device or
	// socket does not exist, cannot be opened (permissions), refused the
	// connection, or the connection was lost and could not be re-established
	// within the bounded number of attempts. It is worth retrying later.
	ErrTPMUnavailable = errors.New("tpm2: TPM unavailable")

	// ErrKeyFileNotFound means a key file does not exist. It is returned
	// together with [fs.ErrNotExist].
	ErrKeyFileNotFound = errors.New("tpm2: key file not found")

	// ErrInvalidKeyFile means a key file is not a TSS2 PRIVATE KEY this
	// package can use (bad PEM or DER, or an unsupported key type).
	ErrInvalidKeyFile = errors.New("tpm2: invalid key file")

	// ErrKeyNotFound means no key is stored at a persistent handle.
	ErrKeyNotFound = errors.New("tpm2: no key at persistent handle")

	// ErrHandleInUse means a persistent handle is already occupied.
	ErrHandleInUse = errors.New("tpm2: persistent handle already in use")

	// ErrAuthFail means the TPM rejected the key's auth value
	// (TPM_RC_AUTH_FAIL or TPM_RC_BAD_AUTH). Each failure counts towards
	// the TPM's dictionary-attack lockout.
	ErrAuthFail = errors.New("tpm2: authorization failed: wrong auth value")

	// ErrLockout means the TPM is in dictionary-attack lockout
	// (TPM_RC_LOCKOUT) after too many authorization failures; it refuses
	// keys that are DA-protected until the lockout recovery time passes.
	ErrLockout = errors.New("tpm2: TPM is in dictionary-attack lockout")

	// ErrWrongTPM means a key file was made for another TPM or under
	// another storage root key: the TPM could not unwrap it
	// (TPM_RC_INTEGRITY on TPM2_Load) or its parent key is absent.
	ErrWrongTPM = errors.New("tpm2: key belongs to another TPM or storage root key")

	// ErrUnsupportedCurve means the curve is not one this package supports
	// (P-256, P-384, P-521) or the TPM does not implement it.
	ErrUnsupportedCurve = errors.New("tpm2: unsupported curve")

	// ErrUnsupportedKey means a TPM object is not an ECC key that can be
	// used for ECDH: it must be an unrestricted decryption key on a
	// supported curve, without the sign attribute unless the caller allows
	// it ([WithAllowSign], allow-sign=true).
	ErrUnsupportedKey = errors.New("tpm2: unsupported key")

	// ErrInvalidKeyRef means a key reference string could not be parsed.
	ErrInvalidKeyRef = errors.New("tpm2: invalid key reference")

	// ErrInvalidAuth means an auth value could not be obtained from its
	// source or is too long (more than 32 bytes).
	ErrInvalidAuth = errors.New("tpm2: invalid auth value")

	// ErrNoAnswer means the TPM at a socket accepted the connection but
	// did not answer the first command within a few seconds: another
	// client may hold swtpm's only connection, or the socket is not a
	// TPM's. It comes with [ErrTPMUnavailable].
	ErrNoAnswer = errors.New("tpm2: the TPM does not answer")

	// ErrNotTPM means what answered at a socket is not a TPM: its answer
	// is not a TPM response (swtpm's control channel, for one, answers
	// with a 4-byte result code). It comes with [ErrTPMUnavailable].
	ErrNotTPM = errors.New("tpm2: not a TPM")

	// ErrAuthRequired means a key needs an auth value and none was given:
	// its key file records that it has one (emptyAuth absent or false).
	// It is returned before the key is tried, so that no attempt counts
	// towards the TPM's dictionary-attack lockout.
	ErrAuthRequired = errors.New("tpm2: the key needs an auth value")

	// ErrClosed means the Key or TPM has been closed.
	ErrClosed = errors.New("tpm2: closed")
)

// transportError marks an I/O failure on the connection to the TPM. After
// one the byte stream may be out of step, so the connection is dropped and
// re-established.
type transportError struct {
	op  string
	err error
}

// Error implements error.
func (e *transportError) Error() string { return "tpm2: transport: " + e.op + ": " + e.err.Error() }

// Unwrap returns the underlying I/O error.
func (e *transportError) Unwrap() error { return e.err }

// isTransportError reports whether err came from the transport (as opposed
// to a TPM response code or a local marshalling problem).
func isTransportError(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// isRetryWarning reports whether err is a TPM warning after which the same
// command should simply be sent again a little later.
func isRetryWarning(err error) bool {
	return errors.Is(err, gotpm.TPMRCRetry) ||
		errors.Is(err, gotpm.TPMRCYielded) ||
		errors.Is(err, gotpm.TPMRCTesting) ||
		errors.Is(err, gotpm.TPMRCNVRate)
}

// isStateLost reports whether err says the TPM no longer knows a handle or
// session this package holds: the TPM was restarted or reset underneath an
// open connection, or someone flushed our objects.
func isStateLost(err error) bool {
	if errors.Is(err, gotpm.TPMRCInitialize) ||
		errors.Is(err, gotpm.TPMRCReferenceH0) || errors.Is(err, gotpm.TPMRCReferenceH1) ||
		errors.Is(err, gotpm.TPMRCReferenceS0) || errors.Is(err, gotpm.TPMRCReferenceS1) {
		return true
	}
	var f1 gotpm.TPMFmt1Error
	if errors.As(err, &f1) {
		// TPM_RC_HANDLE on a handle, or TPM_RC_VALUE / TPM_RC_HANDLE on a
		// session handle, means the object or session is gone.
		if isH, _ := f1.Handle(); isH && errors.Is(err, gotpm.TPMRCHandle) {
			return true
		}
		if isS, _ := f1.Session(); isS && (errors.Is(err, gotpm.TPMRCHandle) || errors.Is(err, gotpm.TPMRCValue)) {
			return true
		}
	}
	return errors.Is(err, errSessionDesync)
}

// mapRC wraps a TPM response code into the matching sentinel, or returns err
// unchanged. It is applied to errors from commands that use a key.
func mapRC(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gotpm.TPMRCAuthFail), errors.Is(err, gotpm.TPMRCBadAuth):
		return fmt.Errorf("%w: %w", ErrAuthFail, err)
	case errors.Is(err, gotpm.TPMRCLockout):
		return fmt.Errorf("%w: %w", ErrLockout, err)
	case errors.Is(err, gotpm.TPMRCECCPoint):
		return fmt.Errorf("%w: the TPM rejected the point: %w", kem.ErrInvalidPublicKey, err)
	}
	return err
}

// openError turns an error from opening a device or dialling a socket into
// one that wraps ErrTPMUnavailable, with a hint for the usual causes.
func openError(spec string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, os.ErrNotExist):
		hint = " (no such device or socket: is a TPM present, the tpm_tis/tpm_crb driver loaded, or swtpm running?)"
	case errors.Is(err, os.ErrPermission):
		hint = " (permission denied: add the user to the group owning the device, usually 'tss')"
	case errors.Is(err, syscall.EBUSY):
		hint = " (device busy: /dev/tpm0 admits one user; use /dev/tpmrm0)"
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = " (connection refused: is swtpm running?)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && hint == "" {
		hint = " (timed out)"
	}
	return fmt.Errorf("%w: open %s%s: %w", ErrTPMUnavailable, spec, hint, err)
}
