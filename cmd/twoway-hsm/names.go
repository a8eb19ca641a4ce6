package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// algName is the name the commands give an HPKE algorithm (a KEM, KDF or
// AEAD identifier).
type algName[T ~uint16] struct {
	name string
	id   T
}

// nameOf returns the name of id in names, or its hex identifier.
func nameOf[T ~uint16](names []algName[T], id T) string {
	for _, n := range names {
		if n.id == id {
			return n.name
		}
	}
	return fmt.Sprintf("0x%04x", uint16(id))
}

// namesOf lists the names of a table for messages.
func namesOf[T ~uint16](names []algName[T]) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = n.name
	}
	return strings.Join(s, ", ")
}

// kemNames maps the short names the commands print to KEM IDs.
var kemNames = []algName[kem.ID]{
	{"p256", kem.DHKEMP256HKDFSHA256},
	{"p384", kem.DHKEMP384HKDFSHA384},
	{"p521", kem.DHKEMP521HKDFSHA512},
	{"x25519", kem.DHKEMX25519HKDFSHA256},
	{"x448", kem.DHKEMX448HKDFSHA512},
	{"mlkem768", kem.MLKEM768},
	{"mlkem1024", kem.MLKEM1024},
	{"xwing", kem.XWing},
}

// kemShort returns the short name of a KEM ("p256"), or its hex id.
func kemShort(id kem.ID) string { return nameOf(kemNames, id) }

// normName lowercases a name and drops the separators people write
// differently ("P-256", "p_256", "DHKEM(P-256, HKDF-SHA256)").
func normName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '_', ',', '(', ')':
			return -1
		}
		return r
	}, s)
}

// kemAliases are other names of KEMs: common curve names.
var kemAliases = map[string]kem.ID{
	"secp256r1": kem.DHKEMP256HKDFSHA256, "prime256v1": kem.DHKEMP256HKDFSHA256,
	"secp384r1": kem.DHKEMP384HKDFSHA384, "secp521r1": kem.DHKEMP521HKDFSHA512,
	"curve25519": kem.DHKEMX25519HKDFSHA256, "curve448": kem.DHKEMX448HKDFSHA512,
	"mlkem768x25519": kem.XWing,
}

// parseKEM reads a KEM name: a short name (p256, x25519, mlkem768, ...),
// its HPKE registry name (DHKEM(P-256, HKDF-SHA256), kem.ID.String), common
// curve aliases (secp256r1, prime256v1), or its identifier (0x0010 or 16).
func parseKEM(s string) (kem.ID, error) {
	n := normName(s)
	if n == "" {
		return 0, usagef("empty KEM name")
	}
	if id, ok := kemAliases[n]; ok {
		return id, nil
	}
	for _, k := range kemNames {
		if n == k.name || n == normName(k.id.String()) {
			return k.id, nil
		}
	}
	if v, err := strconv.ParseUint(n, 0, 16); err == nil {
		if id := kem.ID(v); id.Supported() {
			return id, nil
		}
		return 0, usagef("KEM 0x%04x is not one this tool knows (want %s)", v, namesOf(kemNames))
	}
	return 0, usagef("unknown KEM %q (want %s, an HPKE name such as \"DHKEM(P-256, HKDF-SHA256)\", or an id such as 0x0010)", s, namesOf(kemNames))
}

// KDF and AEAD names, for key-config's --suite and selftest's --kdf and
// --aead.
var (
	kdfNames = []algName[hpke.KDF]{
		{"hkdf-sha256", hpke.KDF_HKDF_SHA256},
		{"hkdf-sha384", hpke.KDF_HKDF_SHA384},
		{"hkdf-sha512", hpke.KDF_HKDF_SHA512},
	}
	aeadNames = []algName[hpke.AEAD]{
		{"aes-128-gcm", hpke.AEAD_AES128GCM},
		{"aes-256-gcm", hpke.AEAD_AES256GCM},
		{"chacha20-poly1305", hpke.AEAD_ChaCha20Poly1305},
	}
)

func kdfName(id hpke.KDF) string   { return nameOf(kdfNames, id) }
func aeadName(id hpke.AEAD) string { return nameOf(aeadNames, id) }

// parseKDF reads a KDF by name (hkdf-sha256, also HKDF-SHA256, sha256) or
// by id (0x0001). Errors are usage errors.
func parseKDF(s string) (hpke.KDF, error) {
	for _, x := range kdfNames {
		if n := normName(s); n == normName(x.name) || n == normName(strings.TrimPrefix(x.name, "hkdf-")) {
			return x.id, nil
		}
	}
	if v, err := strconv.ParseUint(s, 0, 16); err == nil && hpke.KDF(v).IsValid() {
		return hpke.KDF(v), nil
	}
	return 0, usagef("unknown KDF %q (want %s)", s, namesOf(kdfNames))
}

// parseAEAD reads an AEAD by name (aes-128-gcm, also AES128GCM) or by id
// (0x0003). Errors are usage errors.
func parseAEAD(s string) (hpke.AEAD, error) {
	for _, x := range aeadNames {
		if normName(s) == normName(x.name) {
			return x.id, nil
		}
	}
	if v, err := strconv.ParseUint(s, 0, 16); err == nil && hpke.AEAD(v).IsValid() {
		return hpke.AEAD(v), nil
	}
	return 0, usagef("unknown AEAD %q (want %s)", s, namesOf(aeadNames))
}

// parseSuite reads KDF/AEAD, by name (hkdf-sha256/aes-128-gcm, also
// without dashes) or by id (0x0001/0x0003).
func parseSuite(s string) (twoway.SymmetricSuite, error) {
	k, a, ok := strings.Cut(s, "/")
	if !ok {
		return twoway.SymmetricSuite{}, usagef("suite %q: want KDF/AEAD, e.g. hkdf-sha256/aes-128-gcm", s)
	}
	kdf, err := parseKDF(k)
	if err != nil {
		return twoway.SymmetricSuite{}, usagef("suite %q: %v", s, err)
	}
	aead, err := parseAEAD(a)
	if err != nil {
		return twoway.SymmetricSuite{}, usagef("suite %q: %v", s, err)
	}
	return twoway.SymmetricSuite{KDF: kdf, AEAD: aead}, nil
}

// defaultSuites are the symmetric suites offered when none is given: the
// HKDF of the KEM's hash with AES-128-GCM and ChaCha20-Poly1305.
func defaultSuites(id kem.ID) []twoway.SymmetricSuite {
	kdf := hpke.KDF_HKDF_SHA256
	switch id {
	case kem.DHKEMP384HKDFSHA384:
		kdf = hpke.KDF_HKDF_SHA384
	case kem.DHKEMP521HKDFSHA512, kem.DHKEMX448HKDFSHA512:
		kdf = hpke.KDF_HKDF_SHA512
	}
	return []twoway.SymmetricSuite{
		{KDF: kdf, AEAD: hpke.AEAD_AES128GCM},
		{KDF: kdf, AEAD: hpke.AEAD_ChaCha20Poly1305},
	}
}
