package twoway_test

import (
	"io"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// The signatures of github.com/openpcc/twoway v0.0.37, which this package
// keeps so that its users change only the import path. This file does not
// compile if one of them changes. It imports circl's kem package as kem,
// as code written for the reference does (the package itself names it
// circlkem, beside this module's kem).
var (
	_ func(hpke.Suite, byte, kem.PublicKey, io.Reader) (*twoway.RequestSender, error)               = twoway.NewRequestSender
	_ func(twoway.HPKESuite, byte, kem.PublicKey, io.Reader) (*twoway.RequestSender, error)         = twoway.NewRequestSenderWithCustomSuite
	_ func(hpke.Suite, byte, kem.PrivateKey, io.Reader) (*twoway.RequestReceiver, error)            = twoway.NewRequestReceiver
	_ func(twoway.HPKESuite, byte, kem.PrivateKey, io.Reader) (*twoway.RequestReceiver, error)      = twoway.NewRequestReceiverWithCustomSuite
	_ func(hpke.Suite, io.Reader) *twoway.MultiRequestSender                                        = twoway.NewMultiRequestSender
	_ func(twoway.HPKESuite, io.Reader) *twoway.MultiRequestSender                                  = twoway.NewMultiRequestSenderWithCustomSuite
	_ func(hpke.Suite, byte, kem.PrivateKey, io.Reader) (*twoway.MultiRequestReceiver, error)       = twoway.NewMultiRequestReceiver
	_ func(twoway.HPKESuite, byte, kem.PrivateKey, io.Reader) (*twoway.MultiRequestReceiver, error) = twoway.NewMultiRequestReceiverWithCustomSuite
	_ func(hpke.Suite) twoway.HPKESuite                                                             = twoway.AdaptCirclHPKESuite
	_ func(twoway.HPKESuite, byte) twoway.RequestHeader                                             = twoway.NewRequestHeaderForSuite
	_ func([]byte) (twoway.RequestHeader, error)                                                    = twoway.ParseRequestHeaderFrom
	_ func() twoway.Option                                                                          = twoway.EnableChunking
	_ func(int) twoway.Option                                                                       = twoway.WithMaxChunkPlaintextLen
	_ func(int) twoway.Option                                                                       = twoway.WithInitialChunkBufferLen

	_ func(*twoway.RequestSender, io.Reader, []byte, ...twoway.Option) (*twoway.RequestSealer, error)                = (*twoway.RequestSender).NewRequestSealer
	_ func(*twoway.RequestSealer, io.Reader, []byte, ...twoway.Option) (io.Reader, error)                            = (*twoway.RequestSealer).NewResponseOpener
	_ func(*twoway.RequestReceiver, io.Reader, []byte, ...twoway.Option) (*twoway.RequestOpener, error)              = (*twoway.RequestReceiver).NewRequestOpener
	_ func(*twoway.RequestOpener, io.Reader, []byte, ...twoway.Option) (*twoway.ResponseSealer, error)               = (*twoway.RequestOpener).NewResponseSealer
	_ func(*twoway.MultiRequestSender, io.Reader, []byte, ...twoway.Option) (*twoway.MultiRequestSealer, error)      = (*twoway.MultiRequestSender).NewRequestSealer
	_ func(*twoway.MultiRequestSealer, byte, kem.PublicKey) ([]byte, twoway.ResponseOpenerFunc, error)               = (*twoway.MultiRequestSealer).EncapsulateKey
	_ func(*twoway.MultiRequestReceiver, []byte, io.Reader, []byte, ...twoway.Option) (*twoway.RequestOpener, error) = (*twoway.MultiRequestReceiver).NewRequestOpener

	_ func(*twoway.RequestSealer) (int, bool)      = (*twoway.RequestSealer).Len
	_ func(*twoway.RequestSealer) int              = (*twoway.RequestSealer).HeaderLen
	_ func(*twoway.RequestSealer) (int, bool)      = (*twoway.RequestSealer).MaxCiphertextChunkLen
	_ func(*twoway.ResponseSealer) (int, bool)     = (*twoway.ResponseSealer).Len
	_ func(*twoway.ResponseSealer) int             = (*twoway.ResponseSealer).HeaderLen
	_ func(*twoway.ResponseSealer) (int, bool)     = (*twoway.ResponseSealer).MaxCiphertextChunkLen
	_ func(*twoway.MultiRequestSealer) (int, bool) = (*twoway.MultiRequestSealer).Len
	_ func(*twoway.MultiRequestSealer) int         = (*twoway.MultiRequestSealer).HeaderLen
	_ func(*twoway.MultiRequestSealer) (int, bool) = (*twoway.MultiRequestSealer).MaxCiphertextChunkLen

	_ io.Reader = (*twoway.RequestSealer)(nil)
	_ io.Reader = (*twoway.RequestOpener)(nil)
	_ io.Reader = (*twoway.ResponseSealer)(nil)
	_ io.Reader = (*twoway.MultiRequestSealer)(nil)

	_ = twoway.BinaryRequestHeaderLen
	_ twoway.HPKESender
	_ twoway.HPKEReceiver
	_ twoway.HPKESealer
	_ twoway.HPKEOpener
	_ twoway.HPKEExporter
)
