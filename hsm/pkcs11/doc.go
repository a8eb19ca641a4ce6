// Package pkcs11 keeps HPKE receiver keys on a PKCS#11 token and performs
// their Diffie-Hellman step there (CKM_ECDH1_DERIVE), through
// github.com/miekg/pkcs11.
//
// A [Key] implements [kem.Exchanger] and, for P-256, P-384, P-521 and
// X25519, Go's [crypto/ecdh.KeyExchanger], so both the twoway core (through the
// kem package's DHKEM adapter) and crypto/hpke.NewDHKEMPrivateKey accept it. The private key
// never leaves the token: keys are generated there (or imported once) as
// sensitive, non-extractable, derive-only objects, and only the shared
// secret of each exchange comes back.
//
// # Opening
//
// [OpenKey] does everything from one RFC 7512 URI:
//
//	key, err := pkcs11.OpenKey(ctx,
//		"pkcs11:token=gw;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gw/pin")
//	defer key.Close()
//	priv, err := hpke.NewDHKEMPrivateKey(key)
//
// [OpenToken] opens a token for managing keys ([Token.GenerateKey],
// [Token.ImportKey], [Token.FindKey], [Token.ListKeys], [Token.DeleteKey]);
// [ReadPublicKey] reads a key's public key without logging in.
//
// # References
//
// Tokens and keys are named by RFC 7512 URIs ([ParseURI]). An attribute
// RFC 7512 does not define is an error that names it (a typo such as
// tokn= must not select another token); vendor attributes, x-..., are
// accepted and ignored; module-name is refused (give module-path).
//
// The module path comes from [WithModulePath] or the URI's module-path,
// and else is p11-kit's proxy module when it is installed
// ([DefaultModulePath]); without one, opening fails with
// [ErrModuleNotFound]. SoftHSM2 is never a default: development tools
// find it themselves (package testenv/softhsm) and name it. The path is
// reported ([TokenInfo].ModulePath) as it was given, symlinks unresolved.
//
// The user PIN comes from [WithPIN], [WithPINEnv], [WithPINFile], the
// URI's pin-value or its pin-source (a file path, a file: URI, or env:NAME
// for an environment variable, read by package keystore/secret), in that
// order, and else from [WithPINFunc] once the token is found and needs a
// login; a source that cannot be read is an error, never an empty PIN.
//
// # Modules, sessions, recovery
//
// A module is loaded once per process and shared by every Token on it
// (under whichever path it was named); it is finalised when the last
// Token on it closes. Each Token keeps a pool of
// read-write sessions no larger than the token's MaxRwSessionCount and logs
// in once. When sessions, the login, the token or the module's
// initialisation are lost, the Token recovers and retries a bounded number
// of times (see [Token]). A recovery closes the Token's sessions that are
// still alive (a module that times out one session leaves the others open),
// so that recoveries do not use up a token's session limit; a session whose
// number the module may have handed out again, to another Token of the
// process, is never closed.
//
// # X25519 and X448
//
// PKCS#11 3.0 makes Montgomery keys with CKM_EC_MONTGOMERY_KEY_PAIR_GEN
// (CKK_EC_MONTGOMERY); SoftHSM 2.6 lacks that mechanism and instead makes
// CKK_EC_EDWARDS keys whose CKA_EC_PARAMS is the X25519 or X448 OID, and
// derives with them through CKM_ECDH1_DERIVE. The package tries both and
// uses whichever the token takes.
//
// # Security
//
// Errors and log records never contain a PIN, private key material or a
// shared secret; [URI.String] and [RedactURI] drop a pin-value. The PIN is
// kept in memory for logging in again after a recovery. Peer public keys
// are validated before the token sees them, and an all-zero secret is never
// returned. Shared secrets returned to the caller are the caller's to zero;
// buffers the package owns are zeroed, but the module's and the cgo
// wrapper's own copies are outside its reach.
package pkcs11
