package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/twoway-hsm/twoway-hsm/gateway"
)

// newEvidence builds the keyring's evidence handler
// (/.well-known/ohttp-gateway/evidence and .../evidence/activate): every
// key is asked through the plugin (plugins.Key.Attest, .Activate), which
// answers for TPM keys and reports PKCS#11 and soft keys as not
// attestable. The evidence of the published keys is collected here, at
// start and at each reload, and cached; the rate limit is the command's,
// shared by every keyring, so that a reload does not refill it.
func (g *gatewayCmd) newEvidence(ctx context.Context, kr *keyring, cfg gatewayConfig) (*gateway.EvidenceHandler, error) {
	attesters := make(map[byte]gateway.Attester, len(kr.keys))
	for id, k := range kr.keys {
		attesters[id] = k
	}
	// The bucket is made once; a reload that succeeds changes its rate
	// and size (gatewayCmd.reload).
	g.evidenceOnce.Do(func() {
		g.evidenceLimiter = rate.NewLimiter(rate.Limit(cfg.EvidenceRate), cfg.EvidenceBurst)
	})
	var chain [][]byte
	if cfg.EKChain != "" {
		certs, err := readCertsPEM(nil, cfg.EKChain)
		if err != nil {
			return nil, fmt.Errorf("ek_chain: %w", err)
		}
		for _, c := range certs {
			chain = append(chain, c.Raw)
		}
	}
	return gateway.NewEvidenceHandler(ctx, kr.tw, attesters,
		gateway.WithEvidenceChain(chain),
		gateway.WithEvidencePath(cfg.Path),
		gateway.WithEvidenceLimiter(g.evidenceLimiter),
		gateway.WithEvidenceMaxAge(max(time.Duration(cfg.CacheMaxAge), time.Second)),
		gateway.WithEvidenceLogger(g.log.With("component", "evidence")),
		gateway.WithEvidenceMetrics(g.metrics))
}
