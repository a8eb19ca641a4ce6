package tpm2

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	keyfile "github.com/foxboron/go-tpm-keyfiles"
	gotpm "github.com/google/go-tpm/tpm2"
)

// Handle is a TPM 2.0 handle, such as the persistent handle 0x81000010.
type Handle uint32

// SRKHandle is the persistent handle the TCG provisioning guidance reserves
// for the storage root key.
const SRKHandle Handle = 0x81000001

// Persistent handles for owner-hierarchy objects lie in this range.
const (
	PersistentFirst Handle = 0x81000000
	PersistentLast  Handle = 0x817FFFFF
)

// ownerHierarchy is the parent handle a TSS2 key file records for a key
// whose parent is the owner hierarchy's SRK created from the standard
// template (TPM_RH_OWNER).
const ownerHierarchy = Handle(gotpm.TPMRHOwner)

// String formats h as 0x%08x.
func (h Handle) String() string { return fmt.Sprintf("0x%08x", uint32(h)) }

// LogValue implements slog.LogValuer: a handle is logged as 0x%08x, not
// as a number (which JSON logs, and go-plugin relaying them, turn into
// 2.147483648e+09).
func (h Handle) LogValue() slog.Value { return slog.StringValue(h.String()) }

// IsPersistent reports whether h is in the owner's persistent range.
func (h Handle) IsPersistent() bool { return h >= PersistentFirst && h <= PersistentLast }

// ParseHandle parses a handle written in hex (0x81000010) or decimal.
func ParseHandle(s string) (Handle, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 0, 32)
	if err != nil {
		return 0, fmt.Errorf("tpm2: bad handle %q", s)
	}
	return Handle(v), nil
}

// srkTemplate is the TCG ECC P-256 storage key template ("H-2" in the TCG
// EK Credential Profile, with an empty unique field), which the TSS2 key
// file format prescribes for keys whose parent is TPM_RH_OWNER. Because a
// primary key is derived deterministically from the hierarchy seed and the
// template, every tool using it (tpm2-openssl, tpm2-tss-engine, the
// openssl_tpm2_engine, go-tpm-keyfiles) gets the same SRK.
func srkTemplate() gotpm.TPMTPublic { return keyfile.ECCSRK_H2_Template }

// parent is a storage key that keys are created, imported and loaded under.
type parent struct {
	handle     gotpm.TPMHandle // where it is loaded now
	name       gotpm.TPM2BName
	pub        gotpm.TPMTPublic
	persistent bool
}

func (p *parent) authHandle(s gotpm.Session) gotpm.AuthHandle {
	return gotpm.AuthHandle{Handle: p.handle, Name: p.name, Auth: s}
}

// isStorageKey reports whether pub can be a parent: a restricted
// decryption key.
func isStorageKey(pub *gotpm.TPMTPublic) bool {
	a := pub.ObjectAttributes
	return a.Restricted && a.Decrypt && !a.SignEncrypt
}

// parentFor returns the loaded parent with the given id, creating the
// transient SRK or reading a persistent parent's public area as needed.
// The caller holds the connection lock.
func (c *conn) parentFor(id Handle) (*parent, error) {
	if p := c.parents[id]; p != nil {
		return p, nil
	}
	var p *parent
	var err error
	switch {
	case id == ownerHierarchy:
		p, err = c.createSRK()
	case id.IsPersistent():
		p, err = c.readPersistentParent(id)
	default:
		return nil, fmt.Errorf("%w: unsupported parent handle %v", ErrInvalidKeyFile, id)
	}
	if err != nil {
		return nil, err
	}
	c.parents[id] = p
	return p, nil
}

func (c *conn) createSRK() (*parent, error) {
	p, err := c.createPrimary(gotpm.TPMRHOwner, srkTemplate())
	if err != nil {
		return nil, fmt.Errorf("tpm2: creating SRK: %w", err)
	}
	c.log.Debug("tpm2: created transient SRK", "handle", Handle(p.handle))
	return &parent{handle: p.handle, name: p.name, pub: *p.pub}, nil
}

// primary is a primary key this package derived: the SRK, the
// attestation key or an EK, loaded at a transient handle.
type primary struct {
	handle gotpm.TPMHandle
	name   gotpm.TPM2BName
	pub    *gotpm.TPMTPublic
}

// createPrimary derives the primary key of tmpl in a hierarchy
// (TPM2_CreatePrimary with the hierarchy's empty auth value), making room
// for it if the TPM has none. The caller flushes it.
func (c *conn) createPrimary(hierarchy gotpm.TPMHandle, tmpl gotpm.TPMTPublic) (*primary, error) {
	var rsp *gotpm.CreatePrimaryResponse
	err := c.withObjectMemory(nil, func() error {
		var err error
		rsp, err = gotpm.CreatePrimary{
			PrimaryHandle: gotpm.AuthHandle{Handle: hierarchy, Auth: gotpm.PasswordAuth(nil)},
			InPublic:      gotpm.New2B(tmpl),
		}.Execute(c.tr)
		return err
	})
	if err != nil {
		if errors.Is(err, gotpm.TPMRCAuthFail) || errors.Is(err, gotpm.TPMRCBadAuth) {
			name := "owner"
			if hierarchy == gotpm.TPMRHEndorsement {
				name = "endorsement hierarchy"
			}
			return nil, fmt.Errorf("%s %w: %w", name, ErrAuthFail, err)
		}
		return nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		c.flush(rsp.ObjectHandle)
		return nil, fmt.Errorf("public area: %w", err)
	}
	return &primary{handle: rsp.ObjectHandle, name: rsp.Name, pub: pub}, nil
}

func (c *conn) readPersistentParent(h Handle) (*parent, error) {
	rsp, err := gotpm.ReadPublic{ObjectHandle: gotpm.TPMHandle(h)}.Execute(c.tr)
	if err != nil {
		if errors.Is(err, gotpm.TPMRCHandle) {
			return nil, fmt.Errorf("%w: parent key %v is not present on this TPM", ErrWrongTPM, h)
		}
		return nil, fmt.Errorf("tpm2: reading parent %v: %w", h, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm2: parent %v public area: %w", h, err)
	}
	if !isStorageKey(pub) {
		return nil, fmt.Errorf("%w: parent %v is not a storage key", ErrUnsupportedKey, h)
	}
	return &parent{handle: gotpm.TPMHandle(h), name: rsp.Name, pub: *pub, persistent: true}, nil
}

// srkID decides, once per connection, which parent new keys go under: the
// one chosen with WithTransientSRK; else the persistent
// SRK at 0x81000001 when it is a storage key; else the transient SRK from
// the standard template.
func (c *conn) srkID() (Handle, error) {
	if c.srk != 0 {
		return c.srk, nil
	}
	id := c.cfg.srkHandle
	if id == 0 {
		id = SRKHandle
	}
	if _, err := c.parentFor(id); err != nil {
		if c.cfg.srkHandle != 0 || !(errors.Is(err, ErrWrongTPM) || errors.Is(err, ErrUnsupportedKey)) {
			return 0, err
		}
		id = ownerHierarchy // no usable persistent SRK
	}
	c.srk = id
	return id, nil
}
