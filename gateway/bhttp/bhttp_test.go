package bhttp_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/twoway-hsm/twoway-hsm/gateway/bhttp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The examples of RFC 9292 section 5, byte for byte.
const (
	// Section 5.1, the known-length request.
	rfcKnownRequest = `00034745 54056874 74707300 0a2f6865
		6c6c6f2e 74787440 6c0a7573 65722d61
		67656e74 34637572 6c2f372e 31362e33
		206c6962 6375726c 2f372e31 362e3320
		4f70656e 53534c2f 302e392e 376c207a
		6c69622f 312e322e 3304686f 73740f77
		77772e65 78616d70 6c652e63 6f6d0f61
		63636570 742d6c61 6e677561 67650665
		6e2c206d 690000`
	// Section 5.1, the same request with indeterminate length and padding.
	rfcIndeterminateRequest = `02034745 54056874 74707300 0a2f6865
		6c6c6f2e 7478740a 75736572 2d616765
		6e743463 75726c2f 372e3136 2e33206c
		69626375 726c2f37 2e31362e 33204f70
		656e5353 4c2f302e 392e376c 207a6c69
		622f312e 322e3304 686f7374 0f777777
		2e657861 6d706c65 2e636f6d 0f616363
		6570742d 6c616e67 75616765 06656e2c
		206d6900 00000000 00000000 00000000`
	// Section 5.2, the response with two informational responses.
	rfcResponse = `03406607 72756e6e 696e670a 22736c65
		65702031 35220040 67046c69 6e6b233c
		2f737479 6c652e63 73733e3b 2072656c
		3d707265 6c6f6164 3b206173 3d737479
		6c65046c 696e6b24 3c2f7363 72697074
		2e6a733e 3b207265 6c3d7072 656c6f61
		643b2061 733d7363 72697074 0040c804
		64617465 1d4d6f6e 2c203237 204a756c
		20323030 39203132 3a32383a 35332047
		4d540673 65727665 72064170 61636865
		0d6c6173 742d6d6f 64696669 65641d57
		65642c20 3232204a 756c2032 30303920
		31393a31 353a3536 20474d54 04657461
		67142233 34616133 38372d64 2d313536
		38656230 30220d61 63636570 742d7261
		6e676573 05627974 65730e63 6f6e7465
		6e742d6c 656e6774 68023531 04766172
		790f4163 63657074 2d456e63 6f64696e
		670c636f 6e74656e 742d7479 70650a74
		6578742f 706c6169 6e003348 656c6c6f
		20576f72 6c642120 4d792063 6f6e7465
		6e742069 6e636c75 64657320 61207472
		61696c69 6e672043 524c462e 0d0a0000`
)

var rfcRequestHeader = []bhttp.Field{
	{"user-agent", "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"},
	{"host", "www.example.com"},
	{"accept-language", "en, mi"},
}

var rfcResponseHead = bhttp.Response{
	Framing: bhttp.IndeterminateLengthResponse,
	Informational: []bhttp.Informational{
		{102, []bhttp.Field{{"running", `"sleep 15"`}}},
		{103, []bhttp.Field{{"link", "</style.css>; rel=preload; as=style"}, {"link", "</script.js>; rel=preload; as=script"}}},
	},
	Status: 200,
	Header: []bhttp.Field{
		{"date", "Mon, 27 Jul 2009 12:28:53 GMT"},
		{"server", "Apache"},
		{"last-modified", "Wed, 22 Jul 2009 19:15:56 GMT"},
		{"etag", `"34aa387-d-1568eb00"`},
		{"accept-ranges", "bytes"},
		{"content-length", "51"},
		{"vary", "Accept-Encoding"},
		{"content-type", "text/plain"},
	},
}

const rfcResponseContent = "Hello World! My content includes a trailing CRLF.\r\n"

func rfcRequest(f bhttp.Framing) *bhttp.Request {
	return &bhttp.Request{Framing: f, Method: "GET", Scheme: "https", Path: "/hello.txt", Header: rfcRequestHeader}
}

// readAllRequest decodes a whole request, reading the body one byte at a
// time when slow is set.
func readAllRequest(t testing.TB, b []byte, lim bhttp.Limits) (*bhttp.Request, []byte, error) {
	t.Helper()
	req, err := bhttp.ReadRequest(bytes.NewReader(b), lim)
	if err != nil {
		return nil, nil, err
	}
	content, err := io.ReadAll(req.Body)
	return req, content, err
}

func TestRFC9292RequestExamples(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hex     string
		framing bhttp.Framing
		clen    int64
	}{
		{"known-length", rfcKnownRequest, bhttp.KnownLengthRequest, 0},
		{"indeterminate-length, padded", rfcIndeterminateRequest, bhttp.IndeterminateLengthRequest, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := unhex(t, tc.hex)
			req, content, err := readAllRequest(t, wire, bhttp.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if req.Framing != tc.framing || req.Method != "GET" || req.Scheme != "https" || req.Authority != "" || req.Path != "/hello.txt" {
				t.Errorf("control data %+v", req)
			}
			if !reflect.DeepEqual(req.Header, rfcRequestHeader) {
				t.Errorf("header %q", req.Header)
			}
			if len(content) != 0 || req.ContentLength != tc.clen || req.Body.Trailer() != nil || !req.Body.Complete() {
				t.Errorf("content %q, length %d, trailer %q", content, req.ContentLength, req.Body.Trailer())
			}
			// the encoder produces the example byte for byte
			enc, err := bhttp.AppendRequest(nil, rfcRequest(tc.framing), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.framing == bhttp.IndeterminateLengthRequest {
				enc = bhttp.AppendPadding(enc, len(wire)-len(enc))
			}
			if !bytes.Equal(enc, wire) {
				t.Errorf("encoded\n%x\nwant\n%x", enc, wire)
			}
		})
	}
}

func TestRFC9292ResponseExample(t *testing.T) {
	wire := unhex(t, rfcResponse)
	for _, slow := range []bool{false, true} {
		var src io.Reader = bytes.NewReader(wire)
		if slow {
			src = iotest.OneByteReader(src)
		}
		resp, err := bhttp.ReadResponse(src, bhttp.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if string(content) != rfcResponseContent || resp.ContentLength != -1 {
			t.Errorf("content %q length %d", content, resp.ContentLength)
		}
		got := *resp
		got.Body, got.ContentLength = nil, 0
		if !reflect.DeepEqual(got, rfcResponseHead) {
			t.Errorf("response %+v\nwant %+v", got, rfcResponseHead)
		}
	}
	enc, err := bhttp.AppendResponse(nil, &rfcResponseHead, []byte(rfcResponseContent), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, wire) {
		t.Errorf("encoded\n%x\nwant\n%x", enc, wire)
	}
	// piece by piece, as a streaming response is written
	p := bhttp.AppendFramingIndicator(nil, bhttp.IndeterminateLengthResponse)
	for _, inf := range rfcResponseHead.Informational {
		p = must(bhttp.AppendInformational(p, inf.Status, inf.Header))
	}
	p = must(bhttp.AppendFinalHead(p, 200, rfcResponseHead.Header))
	p = bhttp.AppendChunkHeader(p, len(rfcResponseContent))
	p = append(p, rfcResponseContent...)
	p = must(bhttp.AppendEnd(p, nil))
	if !bytes.Equal(p, wire) {
		t.Errorf("encoded piece by piece\n%x\nwant\n%x", p, wire)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestTruncation checks RFC 9292 section 3.8: a message may end after its
// header section (empty content and trailers) or after its content (empty
// trailers), and nowhere else.
func TestTruncation(t *testing.T) {
	post := func(f bhttp.Framing, content string, trailer []bhttp.Field) []byte {
		req := &bhttp.Request{Framing: f, Method: "POST", Scheme: "https", Authority: "example.com", Path: "/", Header: []bhttp.Field{{"a", "b"}}}
		return must(bhttp.AppendRequest(nil, req, []byte(content), trailer))
	}
	for _, f := range []bhttp.Framing{bhttp.KnownLengthRequest, bhttp.IndeterminateLengthRequest} {
		full := post(f, "hello", []bhttp.Field{{"t", "v"}})
		noTrailer := post(f, "hello", nil)
		empty := post(f, "", nil)
		headLen := len(empty) - 2 // the empty content and trailer take one byte each
		if f == bhttp.IndeterminateLengthRequest {
			headLen = len(empty) - 2
		}
		// allowed ends
		for _, ok := range []struct {
			name    string
			b       []byte
			content string
		}{
			{"whole", full, "hello"},
			{"trailer omitted", noTrailer[:len(noTrailer)-1], "hello"},
			{"content and trailer omitted", empty[:headLen], ""},
			{"padded", append(bytes.Clone(full), 0, 0, 0), "hello"},
		} {
			_, content, err := readAllRequest(t, ok.b, bhttp.Limits{})
			if err != nil || string(content) != ok.content {
				t.Errorf("%v, %s: content %q, %v", f, ok.name, content, err)
			}
		}
		// every other cut fails with ErrTruncated and never delivers bytes
		// that were not sent
		for cut := 0; cut < len(full); cut++ {
			b := full[:cut]
			if (cut == len(noTrailer)-1) || cut == headLen {
				continue
			}
			req, content, err := readAllRequest(t, b, bhttp.Limits{})
			if !errors.Is(err, bhttp.ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%v cut at %d of %d: err %v", f, cut, len(full), err)
			}
			if req != nil && !strings.HasPrefix("hello", string(content)) {
				t.Errorf("%v cut at %d: delivered %q", f, cut, content)
			}
		}
	}
}

func TestNonZeroPadding(t *testing.T) {
	b := append(unhex(t, rfcKnownRequest), 0, 0, 1)
	_, _, err := readAllRequest(t, b, bhttp.Limits{})
	if !errors.Is(err, bhttp.ErrMalformed) || !strings.Contains(err.Error(), "padding byte 2") {
		t.Fatal(err)
	}
}

// ctl is the control data of GET https://example.com/.
const ctl = "03474554 056874747073 0b6578616d706c652e636f6d 012f"

// TestStrict feeds the inputs that github.com/openpcc/bhttp v0.0.37 accepts
// (see the gateway README) and others that a strict decoder refuses.
func TestStrict(t *testing.T) {
	field := func(name, value string) string {
		return hex.EncodeToString(append(append(append([]byte{byte(len(name))}, name...), byte(len(value))), value...))
	}
	for _, tc := range []struct {
		name string
		hex  string
		want error
		msg  string
	}{
		{"known-length content cut short", "00" + ctl + "00 05 616263", bhttp.ErrTruncated, "content"},
		{"indeterminate content without terminator", "02" + ctl + "00 05 68656c6c6f", bhttp.ErrTruncated, "no content terminator"},
		{"LF in a value", "02" + ctl + field("x", "y\nx-injected: evil") + "00 00 00", bhttp.ErrMalformed, "control byte 0x0a"},
		{"CR in a value", "02" + ctl + field("x", "y\r") + "00 00 00", bhttp.ErrMalformed, "control byte 0x0d"},
		{"NUL in a value", "02" + ctl + field("x", "\x00") + "00 00 00", bhttp.ErrMalformed, "control byte 0x00"},
		{"colon in a name", "02" + ctl + field("x-a: b\nfoo", "v") + "00 00 00", bhttp.ErrMalformed, "not a token character"},
		{"uppercase name", "02" + ctl + field("X-A", "v") + "00 00 00", bhttp.ErrMalformed, "uppercase"},
		{"pseudo-field", "02" + ctl + field(":path", "/") + "00 00 00", bhttp.ErrMalformed, "not a token character"},
		{"leading space", "02" + ctl + field("a", " v") + "00 00 00", bhttp.ErrMalformed, "whitespace"},
		{"empty name, known length", "00" + ctl + "02 0000 00 00", bhttp.ErrMalformed, "empty name"},
		{"field overruns its section", "00" + ctl + "03 01 61 05 76 00 00", bhttp.ErrMalformed, "overruns"},
		{"response framing", "01 40c8 00 00 00", bhttp.ErrMalformed, "is a response"},
		{"framing 4", "04", bhttp.ErrMalformed, "framing indicator 4"},
		{"empty method", "02 00 056874747073 00 012f 00 00 00", bhttp.ErrMalformed, "empty method"},
		{"space in path", "02 03474554 056874747073 00 022f20 00 00 00", bhttp.ErrMalformed, "path has byte 0x20"},
		{"relative path", "02 03474554 056874747073 00 0161 00 00 00", bhttp.ErrMalformed, "does not start with '/'"},
		{"userinfo in authority", "02 03474554 056874747073 03614062 012f 00 00 00", bhttp.ErrMalformed, "authority has byte 0x40"},
		{"empty input", "", bhttp.ErrTruncated, "framing"},
		{"cut in a varint", "02 43", bhttp.ErrTruncated, "method"},
		{"header section without terminator", "02" + ctl + field("a", "b"), bhttp.ErrTruncated, "no terminator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, content, err := readAllRequest(t, unhex(t, tc.hex), bhttp.Limits{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want %v containing %q", err, tc.want, tc.msg)
			}
			if bytes.Contains(content, []byte{0}) {
				t.Errorf("delivered invented bytes %q", content)
			}
		})
	}
}

// TestLimits checks that each limit bounds what it names, including the
// header section as a whole (the 16 KB of github.com/openpcc/bhttp bound
// each field line, not the section).
func TestLimits(t *testing.T) {
	many := make([]bhttp.Field, 0, 3000)
	for range cap(many) {
		many = append(many, bhttp.Field{Name: "a", Value: "vvvvv"})
	}
	for _, f := range []bhttp.Framing{bhttp.KnownLengthRequest, bhttp.IndeterminateLengthRequest} {
		req := &bhttp.Request{Framing: f, Method: "GET", Scheme: "https", Path: "/", Header: many}
		b := must(bhttp.AppendRequest(nil, req, nil, nil))
		_, _, err := readAllRequest(t, b, bhttp.Limits{})
		if !errors.Is(err, bhttp.ErrTooLarge) || !strings.Contains(err.Error(), "header section") {
			t.Errorf("%v: 3000 field lines (%d bytes): %v", f, len(b), err)
		}
		if _, _, err := readAllRequest(t, b, bhttp.Limits{MaxFieldSectionLen: 1 << 20}); err != nil {
			t.Errorf("%v: with a 1 MiB limit: %v", f, err)
		}
		// trailers are bounded too
		req.Header = nil
		b = must(bhttp.AppendRequest(nil, req, []byte("x"), many))
		if _, _, err := readAllRequest(t, b, bhttp.Limits{}); !errors.Is(err, bhttp.ErrTooLarge) || !strings.Contains(err.Error(), "trailer section") {
			t.Errorf("%v: trailers: %v", f, err)
		}
		// content
		b = must(bhttp.AppendRequest(nil, req, make([]byte, 100), nil))
		if _, _, err := readAllRequest(t, b, bhttp.Limits{MaxContentLen: 99}); !errors.Is(err, bhttp.ErrTooLarge) {
			t.Errorf("%v: content: %v", f, err)
		}
		if _, c, err := readAllRequest(t, b, bhttp.Limits{MaxContentLen: 100}); err != nil || len(c) != 100 {
			t.Errorf("%v: content at the limit: %d, %v", f, len(c), err)
		}
		// control data
		req.Path = "/" + strings.Repeat("a", 9000)
		b = must(bhttp.AppendRequest(nil, req, nil, nil))
		if _, _, err := readAllRequest(t, b, bhttp.Limits{}); !errors.Is(err, bhttp.ErrTooLarge) || !strings.Contains(err.Error(), "control data") {
			t.Errorf("%v: control data: %v", f, err)
		}
	}
	// a huge declared length is refused before anything is allocated
	b := unhex(t, "00"+ctl+"bfffffffffffffff")
	if _, _, err := readAllRequest(t, b, bhttp.Limits{}); !errors.Is(err, bhttp.ErrTooLarge) {
		t.Errorf("huge header section: %v", err)
	}
	// informational responses
	resp := &bhttp.Response{Framing: bhttp.IndeterminateLengthResponse, Status: 200}
	for range 9 {
		resp.Informational = append(resp.Informational, bhttp.Informational{Status: 103})
	}
	b = must(bhttp.AppendResponse(nil, resp, nil, nil))
	if _, err := bhttp.ReadResponse(bytes.NewReader(b), bhttp.Limits{}); !errors.Is(err, bhttp.ErrTooLarge) {
		t.Errorf("9 informational responses: %v", err)
	}
}

// TestStreaming checks that the body returns each indeterminate-length chunk
// as soon as it arrives, without waiting for more input.
func TestStreaming(t *testing.T) {
	pr, pw := io.Pipe()
	head := must(bhttp.AppendRequestHead(nil, &bhttp.Request{Method: "POST", Scheme: "https", Path: "/"}))
	go pw.Write(bhttp.AppendChunk(head, []byte("first")))
	req, err := bhttp.ReadRequest(pr, bhttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := req.Body.Read(buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("%q %v", buf[:n], err)
	}
	go func() {
		pw.Write(bhttp.AppendChunk(nil, []byte("second")))
		pw.Write(must(bhttp.AppendEnd(nil, []bhttp.Field{{"x-t", "1"}})))
		pw.Close()
	}()
	rest, err := io.ReadAll(req.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("%q %v", rest, err)
	}
	if tr := req.Body.Trailer(); len(tr) != 1 || tr[0] != (bhttp.Field{Name: "x-t", Value: "1"}) {
		t.Fatalf("trailer %q", tr)
	}
}

func TestSourceErrorsPassThrough(t *testing.T) {
	boom := errors.New("boom")
	b := unhex(t, "02"+ctl+"00 05 68656c")
	req, err := bhttp.ReadRequest(io.MultiReader(bytes.NewReader(b), iotest.ErrReader(boom)), bhttp.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(req.Body)
	if !errors.Is(err, boom) || errors.Is(err, bhttp.ErrTruncated) {
		t.Fatal(err)
	}
}

func TestEncoderRefusesBadFields(t *testing.T) {
	req := rfcRequest(bhttp.IndeterminateLengthRequest)
	req.Header = []bhttp.Field{{"ok", "v"}, {"bad name", "v"}}
	if _, err := bhttp.AppendRequest(nil, req, nil, nil); !errors.Is(err, bhttp.ErrMalformed) || !strings.Contains(err.Error(), "field line 1") {
		t.Error(err)
	}
	req.Header = []bhttp.Field{{"X-Mixed-Case", "v\r\nx: y"}}
	if _, err := bhttp.AppendRequest(nil, req, nil, nil); !errors.Is(err, bhttp.ErrMalformed) {
		t.Error(err)
	}
	req.Header = []bhttp.Field{{"X-Mixed-Case", "v"}}
	b := must(bhttp.AppendRequest(nil, req, nil, nil))
	if !bytes.Contains(b, []byte("x-mixed-case")) {
		t.Error("name not lowercased")
	}
	if _, err := bhttp.AppendResponse(nil, &bhttp.Response{Framing: bhttp.KnownLengthResponse, Status: 700}, nil, nil); !errors.Is(err, bhttp.ErrMalformed) {
		t.Error(err)
	}
}
