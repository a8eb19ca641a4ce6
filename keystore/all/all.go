// Package all registers every built-in key store with package keystore:
// import it for its side effect.
//
//	import _ "github.com/twoway-hsm/twoway-hsm/keystore/all"
package all

import (
	_ "github.com/twoway-hsm/twoway-hsm/keystore/pkcs11store"
	_ "github.com/twoway-hsm/twoway-hsm/keystore/softstore"
	_ "github.com/twoway-hsm/twoway-hsm/keystore/tpm2store"
)
