package pkcs11

import (
	"encoding/binary"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// getAttrs reads the attributes types of object h. Attributes the object
// lacks, or that are sensitive, come back nil; other failures are errors.
// The batch call is tried first; on CKR_ATTRIBUTE_TYPE_INVALID or
// CKR_ATTRIBUTE_SENSITIVE each attribute is read on its own.
func getAttrs(c *p11.Ctx, s *session, h p11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*p11.Attribute, len(types))
	for i, typ := range types {
		tmpl[i] = p11.NewAttribute(typ, nil)
	}
	out := make(map[uint][]byte, len(types))
	attrs, err := c.GetAttributeValue(s.h, h, tmpl)
	if err == nil {
		for _, a := range attrs {
			out[a.Type] = a.Value
		}
		return out, nil
	}
	if !isCKR(err, p11.CKR_ATTRIBUTE_TYPE_INVALID) && !isCKR(err, p11.CKR_ATTRIBUTE_SENSITIVE) {
		return nil, fmt.Errorf("pkcs11: C_GetAttributeValue: %w", err)
	}
	for _, typ := range types {
		a, err := c.GetAttributeValue(s.h, h, []*p11.Attribute{p11.NewAttribute(typ, nil)})
		switch {
		case err == nil:
			out[typ] = a[0].Value
		case isCKR(err, p11.CKR_ATTRIBUTE_TYPE_INVALID), isCKR(err, p11.CKR_ATTRIBUTE_SENSITIVE):
		default:
			return nil, fmt.Errorf("pkcs11: C_GetAttributeValue: %w", err)
		}
	}
	return out, nil
}

// attrBool decodes a CK_BBOOL; a missing attribute is false.
func attrBool(v []byte) bool { return len(v) > 0 && v[0] != 0 }

// attrULong decodes a CK_ULONG (native byte order, as the module wrote it).
func attrULong(v []byte) (uint, bool) {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(v)), true
	}
	return 0, false
}

// findObjects returns every object matching tmpl.
func findObjects(c *p11.Ctx, s *session, tmpl []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := c.FindObjectsInit(s.h, tmpl); err != nil {
		return nil, fmt.Errorf("pkcs11: C_FindObjectsInit: %w", err)
	}
	var out []p11.ObjectHandle
	for len(out) < 100000 {
		hs, _, err := c.FindObjects(s.h, 64)
		if err != nil {
			c.FindObjectsFinal(s.h)
			return nil, fmt.Errorf("pkcs11: C_FindObjects: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		out = append(out, hs...)
	}
	if err := c.FindObjectsFinal(s.h); err != nil {
		return nil, fmt.Errorf("pkcs11: C_FindObjectsFinal: %w", err)
	}
	return out, nil
}

// refTemplate selects objects of class with ref's id and label.
func refTemplate(class uint, ref KeyRef) []*p11.Attribute {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class)}
	if len(ref.ID) > 0 {
		t = append(t, p11.NewAttribute(p11.CKA_ID, ref.ID))
	}
	if ref.Label != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, ref.Label))
	}
	return t
}
