package bhttp_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

// fuzzLimits keep the fuzzer's inputs cheap while still reaching every
// limit.
var fuzzLimits = bhttp.Limits{MaxControlDataLen: 512, MaxFieldSectionLen: 512, MaxContentLen: 4096, MaxInformational: 3}

// checkDecodeError fails unless err is one of the package's errors.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, bhttp.ErrMalformed) && !errors.Is(err, bhttp.ErrTruncated) && !errors.Is(err, bhttp.ErrTooLarge) {
		t.Fatalf("error of no known kind: %v", err)
	}
}

// FuzzReadRequest decodes arbitrary bytes as a request. Whatever decodes
// must encode again, in the same framing, to a message that decodes to the
// same request; whatever does not must fail with one of the package's
// errors, never a panic.
func FuzzReadRequest(f *testing.F) {
	f.Add(unhex(f, rfcKnownRequest))
	f.Add(unhex(f, rfcIndeterminateRequest))
	f.Add(unhex(f, "02"+ctl+"00 05 68656c6c6f 00 01 74 01 76 00 0000"))
	f.Add(unhex(f, "00"+ctl+"06 0161 0162 0163 05 68656c6c6f 03 0174 0176"))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := bhttp.ReadRequest(bytes.NewReader(b), fuzzLimits)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		content, err := io.ReadAll(req.Body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		enc, err := bhttp.AppendRequest(nil, req, content, req.Body.Trailer())
		if err != nil {
			t.Fatalf("decoded request does not encode: %v", err)
		}
		again, content2, err := readAllRequest(t, enc, fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !bytes.Equal(content, content2) || !sameFields(req.Header, again.Header) || !sameFields(req.Body.Trailer(), again.Body.Trailer()) ||
			req.Method != again.Method || req.Scheme != again.Scheme || req.Authority != again.Authority || req.Path != again.Path {
			t.Fatalf("round trip changed the request: %+v / %+v", req, again)
		}
	})
}

// FuzzReadResponse is FuzzReadRequest for responses.
func FuzzReadResponse(f *testing.F) {
	f.Add(unhex(f, rfcResponse))
	f.Add(unhex(f, "01 40c8 00 03 616263 00"))
	f.Add(unhex(f, "03 4067 0161 0162 00 40c8 00 03 616263 00 0174 0176 00 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := bhttp.ReadResponse(bytes.NewReader(b), fuzzLimits)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		content, err := io.ReadAll(resp.Body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		enc, err := bhttp.AppendResponse(nil, resp, content, resp.Body.Trailer())
		if err != nil {
			t.Fatalf("decoded response does not encode: %v", err)
		}
		again, err := bhttp.ReadResponse(bytes.NewReader(enc), fuzzLimits)
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v", err)
		}
		content2, err := io.ReadAll(again.Body)
		if err != nil {
			t.Fatalf("re-encoded response body: %v", err)
		}
		if !bytes.Equal(content, content2) || resp.Status != again.Status || !sameFields(resp.Header, again.Header) ||
			!sameFields(resp.Body.Trailer(), again.Body.Trailer()) || len(resp.Informational) != len(again.Informational) {
			t.Fatalf("round trip changed the response")
		}
		for i := range resp.Informational {
			if !reflect.DeepEqual(resp.Informational[i].Status, again.Informational[i].Status) || !sameFields(resp.Informational[i].Header, again.Informational[i].Header) {
				t.Fatalf("round trip changed informational response %d", i)
			}
		}
	})
}

func sameFields(a, b []bhttp.Field) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}
