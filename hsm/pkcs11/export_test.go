package pkcs11

import p11 "github.com/miekg/pkcs11"

// RawCtx returns the github.com/miekg/pkcs11 context of the module a Token
// is on, for tests that pull sessions, the login or the module's
// initialisation from under it. Sessions opened through it are not in the
// record that keeps a Token from closing a session number the module
// handed out again.
func RawCtx(t *Token) *p11.Ctx { return t.ctx() }
