package twoway_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	stdhpke "crypto/hpke"
	"crypto/mlkem"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// ecdhOnlyKey is an ecdh.KeyExchanger whose only capability is ECDH, as a
// hardware key's is.
type ecdhOnlyKey struct{ k *ecdh.PrivateKey }

func (e ecdhOnlyKey) PublicKey() *ecdh.PublicKey             { return e.k.PublicKey() }
func (e ecdhOnlyKey) Curve() ecdh.Curve                      { return e.k.Curve() }
func (e ecdhOnlyKey) ECDH(p *ecdh.PublicKey) ([]byte, error) { return e.k.ECDH(p) }

// TestExamplesThroughECDHOnlyKey opens the RFC 9458 and Chunked OHTTP
// examples with skR behind an ECDH-only key exchanger, byte for byte.
func TestExamplesThroughECDHOnlyKey(t *testing.T) {
	for _, e := range []ohttpExample{rfc9458Example, chunkedExample} {
		t.Run(e.name, func(t *testing.T) {
			sk, err := ecdh.X25519().NewPrivateKey(unhex(t, e.skR))
			if err != nil {
				t.Fatal(err)
			}
			key, err := kem.FromKeyExchanger(ecdhOnlyKey{sk})
			if err != nil {
				t.Fatal(err)
			}
			rcv, err := twoway.NewRequestReceiverForKey(e.config(t).KeyID, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, bytes.NewReader(unhex(t, e.respNonce)))
			if err != nil {
				t.Fatal(err)
			}
			checkExampleReceiver(t, e, rcv)
		})
	}
}

// strictKey is a key that fails the test when anything other than its KEM,
// its public key or the Diffie-Hellman step is asked of it.
type strictKey struct {
	t     *testing.T
	x     kem.Exchanger
	calls atomic.Int32
}

func (s *strictKey) KEM() kem.ID            { return s.x.KEM() }
func (s *strictKey) PublicKeyBytes() []byte { return s.x.PublicKeyBytes() }
func (s *strictKey) ECDHContext(ctx context.Context, peer []byte) ([]byte, error) {
	s.calls.Add(1)
	return s.x.ECDHContext(ctx, peer)
}
func (s *strictKey) Bytes() ([]byte, error) {
	s.t.Fatal("private key bytes requested")
	return nil, nil
}
func (s *strictKey) MarshalBinary() ([]byte, error) {
	s.t.Fatal("private key marshalled")
	return nil, nil
}
func (s *strictKey) Seed() []byte { s.t.Fatal("seed requested"); return nil }

func TestReceiverNeverAsksForPrivateKey(t *testing.T) {
	soft, _ := kem.GenerateKey(kem.DHKEMP256HKDFSHA256)
	sk := &strictKey{t: t, x: soft.(kem.Exchanger)}
	key, err := kem.DHKEM(sk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hpke.KEM_P256_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(key.PublicKeyBytes())
	if err != nil {
		t.Fatal(err)
	}
	suite := hpke.NewSuite(hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
	rcv, err := twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	mrcv, _ := twoway.NewMultiRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
	snd, _ := twoway.NewRequestSender(suite, 1, pub, nil)
	for _, opts := range [][]twoway.Option{nil, {twoway.EnableChunking()}} {
		roundTripWith(t, snd, rcv, pattern(5000), wholeReads, 4096, opts...)
		multiRoundTripWith(t, twoway.NewMultiRequestSender(suite, nil), []multiReceiver{{1, pub, mrcv}}, pattern(5000), opts...)
	}
	if n := sk.calls.Load(); n != 4 {
		t.Fatalf("%d ECDH calls for 4 requests", n)
	}
}

// TestKeyTypesOpenIdentically seals one request per KEM and opens it through
// every kind of key this module accepts for that KEM: circl software keys,
// crypto/ecdh or crypto/mlkem keys, this module's software keys and
// interface-only keys. All must give the same plaintext and, with the same
// response nonce, the same response bytes.
func TestKeyTypesOpenIdentically(t *testing.T) {
	type keyCase struct {
		name string
		rcv  func(kdf hpke.KDF, aead hpke.AEAD, rnd io.Reader) (*twoway.RequestReceiver, error)
	}
	for _, kemID := range []kem.ID{
		kem.DHKEMP256HKDFSHA256, kem.DHKEMP384HKDFSHA384, kem.DHKEMP521HKDFSHA512,
		kem.DHKEMX25519HKDFSHA256, kem.DHKEMX448HKDFSHA512, kem.XWing,
		kem.MLKEM768, kem.MLKEM1024,
	} {
		t.Run(kemID.String(), func(t *testing.T) {
			const kdf, aead = hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305
			soft, err := kem.GenerateKey(kemID)
			if err != nil {
				t.Fatal(err)
			}
			skb, _ := kem.MarshalPrivateKey(soft)
			var cases []keyCase
			forKey := func(k kem.PrivateKey) func(hpke.KDF, hpke.AEAD, io.Reader) (*twoway.RequestReceiver, error) {
				return func(f hpke.KDF, a hpke.AEAD, r io.Reader) (*twoway.RequestReceiver, error) {
					return twoway.NewRequestReceiverForKey(4, k, f, a, r)
				}
			}
			cases = append(cases, keyCase{"kem software", forKey(soft)})
			if hpke.KEM(kemID).IsValid() {
				csk, err := hpke.KEM(kemID).Scheme().UnmarshalBinaryPrivateKey(skb)
				if err != nil {
					t.Fatal(err)
				}
				cases = append(cases, keyCase{"circl", func(f hpke.KDF, a hpke.AEAD, r io.Reader) (*twoway.RequestReceiver, error) {
					return twoway.NewRequestReceiver(hpke.NewSuite(hpke.KEM(kemID), f, a), 4, csk, r)
				}})
			}
			if c := kemID.Curve(); c != nil {
				ek, _ := c.NewPrivateKey(skb)
				k1, _ := kem.FromKeyExchanger(ek)
				k2, _ := kem.FromKeyExchanger(ecdhOnlyKey{ek})
				cases = append(cases, keyCase{"crypto/ecdh", forKey(k1)}, keyCase{"ECDH-only", forKey(k2)})
			}
			if x, ok := soft.(kem.Exchanger); ok {
				k, _ := kem.DHKEM(&strictKey{t: t, x: x})
				cases = append(cases, keyCase{"Exchanger-only", forKey(k)})
			}
			switch kemID {
			case kem.MLKEM768:
				dk, _ := mlkem.NewDecapsulationKey768(skb)
				k, _ := kem.FromDecapsulator(dk)
				cases = append(cases, keyCase{"crypto/mlkem", forKey(k)})
			case kem.MLKEM1024:
				dk, _ := mlkem.NewDecapsulationKey1024(skb)
				k, _ := kem.FromDecapsulator(dk)
				cases = append(cases, keyCase{"crypto/mlkem", forKey(k)})
			}

			// Seal with Go's crypto/hpke, an implementation independent of
			// this package and of circl; for X448, which it lacks, with circl.
			hdr, _ := twoway.RequestHeader{KeyID: 4, KemID: hpke.KEM(kemID), KDFID: kdf, AEADID: aead}.MarshalBinary()
			inf := append([]byte("app/req\x00"), hdr...)
			var enc, ct []byte
			var export func(ctx string, l int) []byte
			if stdKEM, err := stdhpke.NewKEM(uint16(kemID)); err == nil {
				stdPub, err := stdKEM.NewPublicKey(soft.PublicKeyBytes())
				if err != nil {
					t.Fatal(err)
				}
				stdKDF, _ := stdhpke.NewKDF(uint16(kdf))
				stdAEAD, _ := stdhpke.NewAEAD(uint16(aead))
				var sender *stdhpke.Sender
				enc, sender, err = stdhpke.NewSender(stdPub, stdKDF, stdAEAD, inf)
				if err != nil {
					t.Fatal(err)
				}
				ct, _ = sender.Seal(nil, []byte("same request"))
				export = func(c string, l int) []byte { b, _ := sender.Export(c, l); return b }
			} else {
				pub, err := hpke.KEM(kemID).Scheme().UnmarshalBinaryPublicKey(soft.PublicKeyBytes())
				if err != nil {
					t.Fatal(err)
				}
				snd, _ := hpke.NewSuite(hpke.KEM(kemID), kdf, aead).NewSender(pub, inf)
				var sealer hpke.Sealer
				enc, sealer, err = snd.Setup(nil)
				if err != nil {
					t.Fatal(err)
				}
				ct, _ = sealer.Seal([]byte("same request"), nil)
				export = func(c string, l int) []byte { return sealer.Export([]byte(c), uint(l)) }
			}
			req := append(append(bytes.Clone(hdr), enc...), ct...)

			var first []byte
			for _, c := range cases {
				rcv, err := c.rcv(kdf, aead, bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				o, err := rcv.NewRequestOpener(bytes.NewReader(req), []byte("app/req"))
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				got, _ := io.ReadAll(o)
				if string(got) != "same request" {
					t.Fatalf("%s: request %q", c.name, got)
				}
				rs, _ := o.NewResponseSealer(bytes.NewReader([]byte("same response")), []byte("app/resp"))
				resp, _ := io.ReadAll(rs)
				if first == nil {
					first = resp
					// The response also opens with crypto/hpke's exporter.
					checkStdResponse(t, export, enc, aead, resp)
				} else if !bytes.Equal(resp, first) {
					t.Fatalf("%s: response differs from %s's", c.name, cases[0].name)
				}
			}
			if len(cases) < 2 {
				t.Fatalf("only %d key kinds for %v", len(cases), kemID)
			}
		})
	}
}

// checkStdResponse derives the response key from an independent HPKE
// implementation's sending context (crypto/hpke, or circl) and opens resp
// with it.
func checkStdResponse(t *testing.T, export func(string, int) []byte, enc []byte, aead hpke.AEAD, resp []byte) {
	t.Helper()
	nk, nn := int(aead.KeySize()), int(aead.NonceSize())
	l := max(nk, nn)
	secret := export("app/resp", l)
	nonce := resp[:l]
	prk := hpke.KDF_HKDF_SHA256.Extract(secret, append(bytes.Clone(enc), nonce...))
	key := hpke.KDF_HKDF_SHA256.Expand(prk, []byte("key"), uint(nk))
	aeadNonce := hpke.KDF_HKDF_SHA256.Expand(prk, []byte("nonce"), uint(nn))
	c, _ := aead.New(key)
	pt, err := c.Open(nil, aeadNonce, resp[l:], nil)
	if err != nil || string(pt) != "same response" {
		t.Fatalf("response does not open with crypto/hpke's exporter: %v", err)
	}
}

// slowKey blocks in decapsulation until its context ends.
type slowKey struct{ kem.PrivateKey }

func (s slowKey) DecapsulateContext(ctx context.Context, enc []byte) ([]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return nil, errors.New("slowKey: not cancelled")
	}
}

func TestGatewayRotation(t *testing.T) {
	type gk struct {
		id    byte
		kem   hpke.KEM
		suite twoway.SymmetricSuite
	}
	keys := []gk{
		{1, hpke.KEM_X25519_HKDF_SHA256, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_AES128GCM}},
		{2, hpke.KEM_P256_HKDF_SHA256, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA256, AEAD: hpke.AEAD_ChaCha20Poly1305}},
		{3, hpke.KEM_P384_HKDF_SHA384, twoway.SymmetricSuite{KDF: hpke.KDF_HKDF_SHA384, AEAD: hpke.AEAD_AES256GCM}},
	}
	g := twoway.NewGateway(nil)
	pubs := map[byte]circlkem.PublicKey{}
	for _, k := range keys {
		sk, err := kem.GenerateKey(kem.ID(k.kem))
		if err != nil {
			t.Fatal(err)
		}
		if err := g.AddKey(k.id, sk, k.suite); err != nil {
			t.Fatal(err)
		}
		pubs[k.id], _ = k.kem.Scheme().UnmarshalBinaryPublicKey(sk.PublicKeyBytes())
	}
	if err := g.AddKey(2, mustKey(t), keys[0].suite); err == nil {
		t.Fatal("duplicate key id accepted")
	}
	// The published configurations describe the three keys, and a client
	// that knows only them can reach each.
	body, err := g.MarshalKeyConfigs()
	if err != nil {
		t.Fatal(err)
	}
	configs, err := twoway.ParseKeyConfigs(body)
	if err != nil || len(configs) != 3 {
		t.Fatalf("published %d configs: %v", len(configs), err)
	}
	send := func(kc twoway.KeyConfig, opts ...twoway.Option) ([]byte, *twoway.RequestSealer) {
		pub, err := kc.KEM.Scheme().UnmarshalBinaryPublicKey(kc.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		snd, err := twoway.NewRequestSender(hpke.NewSuite(kc.KEM, kc.Suites[0].KDF, kc.Suites[0].AEAD), kc.KeyID, pub, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := snd.NewRequestSealer(bytes.NewReader([]byte(fmt.Sprint("for key ", kc.KeyID))), []byte("m"), opts...)
		ct, _ := io.ReadAll(s)
		return ct, s
	}
	for i, kc := range configs {
		if kc.KeyID != keys[i].id || kc.KEM != keys[i].kem || kc.Suites[0] != keys[i].suite {
			t.Fatalf("config %d: %+v", i, kc)
		}
		for _, opts := range [][]twoway.Option{nil, {twoway.EnableChunking()}} {
			ct, s := send(kc, opts...)
			o, err := g.NewRequestOpener(bytes.NewReader(ct), []byte("m"), opts...)
			if err != nil {
				t.Fatalf("key %d: %v", kc.KeyID, err)
			}
			got, err := io.ReadAll(o)
			if err != nil || string(got) != fmt.Sprint("for key ", kc.KeyID) {
				t.Fatalf("key %d: %q %v", kc.KeyID, got, err)
			}
			rs, _ := o.NewResponseSealer(bytes.NewReader([]byte("ok")), []byte("r"), opts...)
			rct, _ := io.ReadAll(rs)
			ro, err := s.NewResponseOpener(bytes.NewReader(rct), []byte("r"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := io.ReadAll(ro); string(got) != "ok" {
				t.Fatalf("key %d: response %q", kc.KeyID, got)
			}
		}
		// one-to-many through the gateway
		ms, _ := twoway.NewMultiRequestSender(hpke.NewSuite(kc.KEM, kc.Suites[0].KDF, kc.Suites[0].AEAD), nil).NewRequestSealer(bytes.NewReader([]byte("multi")), []byte("m"))
		mct, _ := io.ReadAll(ms)
		ek, _, err := ms.EncapsulateKey(kc.KeyID, pubs[kc.KeyID])
		if err != nil {
			t.Fatal(err)
		}
		o, err := g.NewMultiRequestOpener(ek, bytes.NewReader(mct), []byte("m"))
		if err != nil {
			t.Fatalf("multi key %d: %v", kc.KeyID, err)
		}
		if got, _ := io.ReadAll(o); string(got) != "multi" {
			t.Fatalf("multi key %d: %q", kc.KeyID, got)
		}
	}
	// A suite the key does not accept, and a removed key, are clear errors.
	kc1 := configs[0]
	kc1.Suites = []twoway.SymmetricSuite{{KDF: hpke.KDF_HKDF_SHA512, AEAD: hpke.AEAD_AES128GCM}}
	ct, _ := send(kc1)
	if _, err := g.NewRequestOpener(bytes.NewReader(ct), []byte("m")); !errors.Is(err, twoway.ErrUnsupportedSuite) {
		t.Fatalf("unaccepted suite: %v", err)
	}
	// An unpublished key still opens requests, and is left out of the
	// published configurations.
	hidden, _ := send(configs[0])
	if !g.SetPublished(1, false) || g.SetPublished(77, false) {
		t.Fatal("SetPublished found the wrong keys")
	}
	if configs, _ := twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs())); len(configs) != 2 || configs[0].KeyID != 2 {
		t.Fatalf("with key 1 unpublished the gateway publishes %+v", configs)
	}
	if o, err := g.NewRequestOpener(bytes.NewReader(hidden), []byte("m")); err != nil {
		t.Fatalf("unpublished key: %v", err)
	} else if got, _ := io.ReadAll(o); string(got) != "for key 1" {
		t.Fatalf("unpublished key: %q", got)
	}
	if pub, ok := g.Published(1); pub || !ok {
		t.Fatalf("Published(1) = %v, %v", pub, ok)
	}
	g.SetPublished(1, true)
	if pub, ok := g.Published(1); !pub || !ok {
		t.Fatalf("Published(1) after SetPublished = %v, %v", pub, ok)
	}
	if configs, _ := twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs())); len(configs) != 3 {
		t.Fatalf("published again: %+v", configs)
	}
	// A key added unpublished opens requests and is never published.
	if err := g.AddUnpublishedKey(8, mustKey(t), keys[0].suite); err != nil {
		t.Fatal(err)
	}
	if pub, ok := g.Published(8); pub || !ok {
		t.Fatalf("Published(8) = %v, %v", pub, ok)
	}
	for _, kc := range must(twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs()))) {
		if kc.KeyID == 8 {
			t.Fatal("an unpublished key was published")
		}
	}
	g.RemoveKey(8)
	old, _ := send(configs[0])
	if !g.RemoveKey(1) {
		t.Fatal("RemoveKey(1) found no key")
	}
	if _, err := g.NewRequestOpener(bytes.NewReader(old), []byte("m")); !errors.Is(err, twoway.ErrUnknownKey) {
		t.Fatalf("removed key: %v", err)
	}
	if configs, _ := twoway.ParseKeyConfigs(must(g.MarshalKeyConfigs())); len(configs) != 2 || configs[0].KeyID != 2 {
		t.Fatalf("after removal the gateway publishes %+v", configs)
	}

	// A cancelled context aborts a slow key promptly.
	slow := slowKey{mustKey(t)}
	if err := g.AddKey(9, slow, keys[0].suite); err != nil {
		t.Fatal(err)
	}
	pub, _ := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(slow.PublicKeyBytes())
	snd, _ := twoway.NewRequestSender(hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM), 9, pub, nil)
	s, _ := snd.NewRequestSealer(bytes.NewReader([]byte("x")), []byte("m"))
	sct, _ := io.ReadAll(s)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err = g.NewRequestOpenerContext(ctx, bytes.NewReader(sct), []byte("m"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled open: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled open returned after %v", d)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	if _, err := g.NewRequestOpenerContext(dctx, bytes.NewReader(sct), []byte("m")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open past its deadline: %v", err)
	}
}

func mustKey(t *testing.T) kem.PrivateKey {
	k, err := kem.GenerateKey(kem.DHKEMX25519HKDFSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// receiverSetup is the receiver-setup benchmark of one KEM: a request
// with an empty body, the Diffie-Hellman call its receiver makes, and two
// receivers for it, one with a circl key and one with an ECDH-only key
// behind the kem interface.
type receiverSetup struct {
	name         string
	ct           []byte
	dh           func() error
	circl, iface *twoway.RequestReceiver
}

func receiverSetups() []receiverSetup {
	var out []receiverSetup
	for _, c := range []struct {
		kem  hpke.KEM
		name string
	}{{hpke.KEM_X25519_HKDF_SHA256, "X25519"}, {hpke.KEM_P256_HKDF_SHA256, "P-256"}} {
		id := kem.ID(c.kem)
		suite := hpke.NewSuite(c.kem, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
		ek, _ := id.Curve().GenerateKey(nil)
		csk, _ := c.kem.Scheme().UnmarshalBinaryPrivateKey(ek.Bytes())
		snd, _ := twoway.NewRequestSender(suite, 1, csk.Public(), nil)
		ct, _ := io.ReadAll(must(snd.NewRequestSealer(bytes.NewReader(nil), []byte("q"))))
		peer, _ := id.Curve().NewPublicKey(ct[7 : 7+id.EncapsulatedKeySize()])
		key, _ := kem.FromKeyExchanger(ecdhOnlyKey{ek})
		out = append(out, receiverSetup{
			name:  c.name,
			ct:    ct,
			dh:    func() error { _, err := ek.ECDH(peer); return err },
			circl: must(twoway.NewRequestReceiver(suite, 1, csk, nil)),
			iface: must(twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)),
		})
	}
	return out
}

// open opens the setup's request with rcv.
func (c receiverSetup) open(b *testing.B, rcv *twoway.RequestReceiver) {
	if _, err := rcv.NewRequestOpener(bytes.NewReader(c.ct), []byte("q")); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReceiverSetup opens a request with an empty body through a circl
// key and through the kem interface (an ECDH-only key), and measures the
// Diffie-Hellman call alone in the same run: the interface path must cost at
// most 10 µs beyond it.
func BenchmarkReceiverSetup(b *testing.B) {
	for _, c := range receiverSetups() {
		for _, impl := range []benchImpl{
			{"dh", func(b *testing.B) {
				if err := c.dh(); err != nil {
					b.Fatal(err)
				}
			}},
			{"circl", func(b *testing.B) { c.open(b, c.circl) }},
			{"interface", func(b *testing.B) { c.open(b, c.iface) }},
		} {
			b.Run("kem="+c.name+"/path="+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					impl.run(b)
				}
			})
		}
	}
}

// BenchmarkReceiverSetupPaired runs the Diffie-Hellman call alone, the
// circl-key receiver and the interface receiver in turn within every
// iteration, and reports their median times and what the interface path
// costs beyond the Diffie-Hellman call ("interface-dh-µs").
func BenchmarkReceiverSetupPaired(b *testing.B) {
	for _, c := range receiverSetups() {
		b.Run("kem="+c.name, func(b *testing.B) {
			meds := pairedMedians(b, []benchImpl{
				{"dh", func(*testing.B) { c.dh() }},
				{"circl", func(b *testing.B) { c.open(b, c.circl) }},
				{"interface", func(b *testing.B) { c.open(b, c.iface) }},
			})
			us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
			dh, circl, iface := us(meds[0]), us(meds[1]), us(meds[2])
			b.ReportMetric(dh, "dh-µs")
			b.ReportMetric(circl, "circl-µs")
			b.ReportMetric(iface, "interface-µs")
			b.ReportMetric(iface-dh, "interface-dh-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}
