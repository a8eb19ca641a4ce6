package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/gateway"
	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// fuzzWorld is a gateway around echo served in process, and a sender to
// its key.
func fuzzWorld(f *testing.F) (*gateway.Handler, *twoway.RequestSender) {
	keys := newKeys(f)
	h, err := gateway.New(keys, echo, gateway.WithLogger(quietLogger()), gateway.WithMaxRequestLen(1<<16), gateway.WithMaxHeaderLen(1024))
	if err != nil {
		f.Fatal(err)
	}
	return h, senderFor(f, keys.KeyConfigs()[0])
}

// FuzzEncapsulatedRequest seals arbitrary bytes as the Binary HTTP request
// of a valid encapsulated request, chunked or not, and serves it. The
// gateway must answer with a complete encapsulated response: the inner
// handler's 200 exactly when the bytes are a valid request (as the codec
// decodes them), an encapsulated 400, 413 or 431 otherwise; never a panic,
// an outer error, or a response that does not open.
func FuzzEncapsulatedRequest(f *testing.F) {
	h, sender := fuzzWorld(f)
	f.Add([]byte{}, false)
	for _, fr := range []bhttp.Framing{bhttp.KnownLengthRequest, bhttp.IndeterminateLengthRequest} {
		f.Add(encodeRequest(f, fr, "POST", "/a?b", []bhttp.Field{{Name: "x", Value: "y"}}, []byte("body"), []bhttp.Field{{Name: "t", Value: "v"}}), fr == bhttp.IndeterminateLengthRequest)
		f.Add(encodeRequest(f, fr, "GET", "/", []bhttp.Field{{Name: "content-length", Value: "3"}}, nil, nil), true)
	}
	f.Fuzz(func(t *testing.T, plain []byte, chunked bool) {
		label, mt, respLabel := gateway.RequestLabel, gateway.RequestMediaType, gateway.ResponseLabel
		var opts []twoway.Option
		if chunked {
			label, mt, respLabel = gateway.ChunkedRequestLabel, gateway.ChunkedRequestMediaType, gateway.ChunkedResponseLabel
			opts = []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(64)}
		}
		s, err := sender.NewRequestSealer(bytes.NewReader(plain), []byte(label), opts...)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := io.ReadAll(s)
		req := httptest.NewRequest("POST", gateway.DefaultPath, bytes.NewReader(enc))
		req.Header.Set("Content-Type", mt)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if len(plain) == 0 && rec.Code == 400 {
			return // nothing authenticated: an outer 400
		}
		if rec.Code != 200 {
			t.Fatalf("outer %d %s", rec.Code, rec.Body.Bytes())
		}
		var ropts []twoway.Option
		if chunked {
			ropts = []twoway.Option{twoway.EnableChunking()}
		}
		o, err := s.NewResponseOpener(rec.Body, []byte(respLabel), ropts...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := bhttp.ReadResponse(o, bhttp.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatalf("response does not open completely: %v", err)
		}
		_, _, decodeErr := readRequest(plain)
		switch resp.Status {
		case 200:
			if decodeErr != nil {
				t.Fatalf("200 for a request the codec refuses: %v", decodeErr)
			}
		case 400, 413, 431:
		default:
			t.Fatalf("inner status %d", resp.Status)
		}
	})
}

func readRequest(b []byte) (*bhttp.Request, []byte, error) {
	req, err := bhttp.ReadRequest(bytes.NewReader(b), bhttp.Limits{MaxControlDataLen: 1024, MaxFieldSectionLen: 1024})
	if err != nil {
		return nil, nil, err
	}
	c, err := io.ReadAll(req.Body)
	return req, c, err
}

// FuzzOuterRequest posts arbitrary bytes as an encapsulated request: the
// answer must be an outer 4xx problem, never a panic, a 5xx or a 200.
func FuzzOuterRequest(f *testing.F) {
	h, sender := fuzzWorld(f)
	s, _ := sender.NewRequestSealer(bytes.NewReader(encodeRequest(f, bhttp.KnownLengthRequest, "GET", "/", nil, nil, nil)), []byte(gateway.RequestLabel))
	good, _ := io.ReadAll(s)
	f.Add(good[:len(good)-1], false)
	f.Add(good[:7], true)
	f.Add([]byte{1, 0, 0x20, 0, 1, 0, 1}, false)
	f.Fuzz(func(t *testing.T, body []byte, chunked bool) {
		mt := gateway.RequestMediaType
		if chunked {
			mt = gateway.ChunkedRequestMediaType
		}
		req := httptest.NewRequest("POST", gateway.DefaultPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", mt)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code > 499 || rec.Header().Get("Content-Type") != gateway.ProblemMediaType {
			t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	})
}

var _ http.Handler = (*gateway.Handler)(nil)
