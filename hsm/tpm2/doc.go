// Package tpm2 keeps HPKE receiver keys in a TPM 2.0: ECC P-256, P-384 and
// (where the TPM has it) P-521 decryption keys whose private scalar never
// leaves the chip, used through TPM2_ECDH_ZGen. It is built on
// github.com/google/go-tpm (package tpm2, imported here as gotpm) and
// stores keys in the TSS2 PRIVATE KEY file format
// (github.com/foxboron/go-tpm-keyfiles), without the optional fields that
// Debian's tpm2-openssl refuses, so that openssl's tpm2 provider and
// tpm2-tools read them as well.
//
// # Opening keys
//
// A [Key] implements [kem.Exchanger] and crypto/ecdh.KeyExchanger, so it
// plugs into this module's twoway receivers and into crypto/hpke:
//
//	key, err := tpm2.OpenKey(ctx, "tpm2:file=/etc/twoway/gw.pem?auth-source=file:/run/secrets/gw-auth")
//	...
//	defer key.Close()
//	priv, err := hpke.NewDHKEMPrivateKey(key) // crypto/hpke
//
// The reference format is described at [KeyRef]; package keystore/tpm2store
// offers the same keys through the keystore interface. Keys are created with
// [TPM.CreateKey], brought in from software with [TPM.ImportKey], saved with
// [Key.WriteKeyFile] and optionally made persistent with [Key.Persist].
//
// # Keys that can also sign
//
// Keys made here are decrypt-only. EC keys that tpm2-openssl (openssl
// genpkey -provider tpm2) and tpm2_create make by default can sign as well;
// they are refused unless the caller asks for them ([WithAllowSign], or
// allow-sign=true in a reference). One key for both signatures and key
// agreement breaks key separation: whoever holds the key file and reaches
// the TPM can make it sign anything, and a protocol that trusts its
// signatures (a TLS client certificate, a signed token) can then be
// attacked through the other use.
//
// # Transports
//
// "/dev/tpmrm0" (the default: the kernel resource manager), "/dev/tpm0",
// "tcp:HOST:PORT" and "unix:PATH" for swtpm (`swtpm socket --server
// type=tcp|unixio`). swtpm's data channel carries bare TPM command and
// response buffers (no Microsoft-simulator envelope); its control channel,
// which this package does not use, speaks swtpm's own protocol: a
// connection to it, or to a swtpm whose only connection another client
// holds, fails within seconds with [ErrNotTPM] or [ErrNoAnswer] rather
// than waiting for an I/O timeout. See [OpenTransport].
//
// # Storage root key and sessions
//
// Keys live under a storage root key (SRK): the persistent key at
// 0x81000001 when there is one, otherwise the ECC P-256 SRK that the TCG
// template derives deterministically from the owner hierarchy's seed, so
// it is recreated identically on demand and other tools derive the same
// one. Every ECDH runs in one HMAC session per connection, salted to the
// SRK, with AES-128-CFB response encryption: the shared point is encrypted
// on the TPM bus and the key's auth value is proven by HMAC, never sent.
//
// # Robustness
//
// One connection per transport is shared by the whole process and
// serialised by a lock that honours contexts. At connect, transient objects
// and sessions that a crashed client left on a TPM without resource manager
// (swtpm, /dev/tpm0) are flushed. TPM_RC_RETRY, _YIELDED and _TESTING are
// retried with a short backoff; after a lost connection, a TPM restart, a
// TPM_Init or lost handles the package reconnects (sending TPM2_Startup if
// needed), recreates the SRK and session, reloads keys from their blobs and
// repeats the command, a bounded number of times, then reports
// [ErrTPMUnavailable]. At most three transient objects are kept loaded
// (the limit of swtpm, of typical TPMs and of the kernel resource manager
// per open file); with more keys in use, the least recently used ones are
// flushed and reloaded when needed.
//
// # Secrets
//
// Auth values come from code ([WithAuth]), a file ([WithAuthFile]) or the
// environment ([WithAuthEnv]), read by package keystore/secret, or from a
// prompt asked only when a key file records one ([WithAuthPrompt]); never
// from the command line. A key file records whether its key has an auth
// value; one that does and has no source is refused with [ErrAuthRequired]
// before the TPM is asked, so that no attempt counts towards the TPM's
// dictionary-attack lockout. Auth values appear in
// no error or log message and are zeroed when the key is closed. The shared
// secret is decrypted into a buffer this package owns and zeroes; the
// copies handed to callers are theirs to zero.
package tpm2
