package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/twoway-hsm/twoway-hsm/attest"
	kempluginv2 "github.com/twoway-hsm/twoway-hsm/plugins/proto/kemplugin/v2"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// Attester is what a Backend implements when it can prove where its keys
// live (package attest): the Attest and Activate RPCs. It is optional: a
// Backend without it answers both with an error wrapping
// attest.ErrNotAttestable. Like Backend, it has no method that exports or
// provisions anything; both only prove.
type Attester interface {
	// Attest returns the evidence for the key named key under its key
	// configuration cfg and nonce (nil for none). A key that cannot be
	// attested gets an error wrapping attest.ErrNotAttestable.
	Attest(ctx context.Context, key string, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error)
	// Activate answers a credential-activation challenge with the TPM
	// that holds the key named key.
	Activate(ctx context.Context, key string, c *attest.Challenge) (*attest.Answer, error)
}

// attesterOf returns b as an Attester, or an error wrapping
// attest.ErrNotAttestable when it is not one.
func attesterOf(b Backend) (Attester, error) {
	if a, ok := b.(Attester); ok {
		return a, nil
	}
	return nil, fmt.Errorf("%w: the plugin's backend does not attest keys", attest.ErrNotAttestable)
}

// Bounds of the attestation calls' inputs, checked on both sides.
const (
	maxKeyName       = 4 << 10
	maxKeyConfigSize = 1 << 10
)

// Attest implements the Attest RPC.
func (s *GRPCServer) Attest(ctx context.Context, req *kempluginv2.AttestRequest) (*kempluginv2.AttestResponse, error) {
	a, err := attesterOf(s.Impl)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := checkAttestInput(req.GetKey(), req.GetKeyConfig(), req.GetNonce()); err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	var cfg twoway.KeyConfig
	if err := cfg.UnmarshalBinary(req.GetKeyConfig()); err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, "attest: key configuration: "+err.Error())
	}
	var nonce []byte
	if len(req.GetNonce()) > 0 {
		nonce = req.GetNonce()
	}
	ev, err := a.Attest(ctx, req.GetKey(), cfg, nonce)
	if err != nil {
		return nil, toStatus(err)
	}
	b, err := ev.MarshalJSON()
	if err != nil {
		return nil, toStatus(err)
	}
	return &kempluginv2.AttestResponse{Evidence: b}, nil
}

// Activate implements the Activate RPC.
func (s *GRPCServer) Activate(ctx context.Context, req *kempluginv2.ActivateRequest) (*kempluginv2.ActivateResponse, error) {
	a, err := attesterOf(s.Impl)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(req.GetKey()) > maxKeyName {
		return nil, grpcstatus.Errorf(codes.InvalidArgument, "activate: key name of %d bytes", len(req.GetKey()))
	}
	c, err := attest.ParseChallenge(req.GetChallenge())
	if err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, "activate: "+err.Error())
	}
	ans, err := a.Activate(ctx, req.GetKey(), c)
	if err != nil {
		return nil, toStatus(err)
	}
	b, err := json.Marshal(ans)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kempluginv2.ActivateResponse{Answer: b}, nil
}

func checkAttestInput(key string, keyConfig, nonce []byte) error {
	switch {
	case key == "" || len(key) > maxKeyName:
		return fmt.Errorf("attest: key name of %d bytes", len(key))
	case len(keyConfig) == 0 || len(keyConfig) > maxKeyConfigSize:
		return fmt.Errorf("attest: key configuration of %d bytes, want 1 to %d", len(keyConfig), maxKeyConfigSize)
	case len(nonce) > attest.MaxNonceSize:
		return fmt.Errorf("attest: nonce of %d bytes, more than %d", len(nonce), attest.MaxNonceSize)
	}
	return nil
}

// Attest calls the Attest RPC and parses the evidence strictly; it checks
// that the evidence is for cfg and nonce. A plugin built before the RPC,
// or a key that cannot be attested, gives an error wrapping
// attest.ErrNotAttestable.
func (c *GRPCClient) Attest(ctx context.Context, key string, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error) {
	kc, err := cfg.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("plugins: attest: %w", err)
	}
	if err := checkAttestInput(key, kc, nonce); err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	resp, err := c.client.Attest(ctx, &kempluginv2.AttestRequest{Key: key, KeyConfig: kc, Nonce: nonce})
	if err != nil {
		return nil, attestStatus(ctx, "attest", err)
	}
	ev, err := attest.ParseEvidence(resp.GetEvidence())
	if err != nil {
		return nil, fmt.Errorf("plugins: attest: the plugin's evidence: %w", err)
	}
	if !bytes.Equal(ev.KeyConfig, kc) || !bytes.Equal(ev.Nonce, nonce) {
		return nil, fmt.Errorf("plugins: attest: the plugin's evidence is for another key configuration or nonce")
	}
	return ev, nil
}

// Activate calls the Activate RPC and parses the answer strictly.
func (c *GRPCClient) Activate(ctx context.Context, key string, ch *attest.Challenge) (*attest.Answer, error) {
	if ch == nil {
		return nil, errors.New("plugins: activate: no challenge")
	}
	b, err := json.Marshal(ch)
	if err != nil {
		return nil, fmt.Errorf("plugins: activate: %w", err)
	}
	if len(b) > attest.MaxChallengeSize {
		return nil, fmt.Errorf("plugins: activate: challenge of %d bytes, more than %d", len(b), attest.MaxChallengeSize)
	}
	resp, err := c.client.Activate(ctx, &kempluginv2.ActivateRequest{Key: key, Challenge: b})
	if err != nil {
		return nil, attestStatus(ctx, "activate", err)
	}
	ans, err := attest.ParseAnswer(resp.GetAnswer())
	if err != nil {
		return nil, fmt.Errorf("plugins: activate: the plugin's answer: %w", err)
	}
	return ans, nil
}

// attestStatus is fromStatus, saying so when the plugin predates the
// attestation RPCs (gRPC's own UNIMPLEMENTED for a method it lacks).
func attestStatus(ctx context.Context, op string, err error) error {
	if st, ok := grpcstatus.FromError(err); ok && st.Code() == codes.Unimplemented && ctx.Err() == nil &&
		(strings.HasPrefix(st.Message(), "unknown method") || strings.HasSuffix(st.Message(), "not implemented")) {
		return fmt.Errorf("plugins: %s: %w: the plugin does not offer attestation (a plugin binary built before it; upgrade it)", op, attest.ErrNotAttestable)
	}
	return fromStatus(ctx, op, err)
}

// Attest returns the key's evidence (see [Attester]) under its key
// configuration cfg, which must hold the key's KEM and public key, for
// nonce (nil for none, at most attest.MaxNonceSize bytes). It asks one of
// the plugin's processes over the control channel. A key that cannot be
// attested (PKCS#11, soft), or a plugin that predates attestation, gives
// an error wrapping attest.ErrNotAttestable.
func (k *Key) Attest(ctx context.Context, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error) {
	var ev *attest.Evidence
	err := k.c.control(ctx, func(ctl *GRPCClient) (err error) {
		ev, err = ctl.Attest(ctx, k.info.Name, cfg, nonce)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("plugins: key %s: %w", k.info.Name, err)
	}
	return ev, nil
}

// Activate answers a credential-activation challenge with the TPM that
// holds the key (see [Attester]).
func (k *Key) Activate(ctx context.Context, c *attest.Challenge) (*attest.Answer, error) {
	var ans *attest.Answer
	err := k.c.control(ctx, func(ctl *GRPCClient) (err error) {
		ans, err = ctl.Activate(ctx, k.info.Name, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("plugins: key %s: %w", k.info.Name, err)
	}
	return ans, nil
}

// Attest and Activate of a snapshot reach the Backend's own, if it has
// them.
func (s snapshot) Attest(ctx context.Context, key string, cfg twoway.KeyConfig, nonce []byte) (*attest.Evidence, error) {
	a, err := attesterOf(s.Backend)
	if err != nil {
		return nil, err
	}
	return a.Attest(ctx, key, cfg, nonce)
}

func (s snapshot) Activate(ctx context.Context, key string, c *attest.Challenge) (*attest.Answer, error) {
	a, err := attesterOf(s.Backend)
	if err != nil {
		return nil, err
	}
	return a.Activate(ctx, key, c)
}

var (
	_ Attester = snapshot{}
	_ Attester = (*GRPCClient)(nil)
)
