// Package softhsm helps run SoftHSM2 (https://github.com/softhsm/SoftHSMv2) as
// a stand-in for a hardware token: it locates the PKCS#11 module, writes an
// isolated softhsm2.conf with its own token directory, and initialises tokens
// without prompting and without putting a PIN on a command line.
//
// It is used by tests (through package testenv), by the operator CLI
// ("twoway-hsm env up"), and by developers by hand.
//
// # SOFTHSM2_CONF and "one module per process"
//
// SoftHSM reads the SOFTHSM2_CONF environment variable once, when the module
// is initialised (C_Initialize), and keeps that configuration until it is
// finalised (C_Finalize). A process loads the module once and shares it
// between all its users (see package hsm/pkcs11), so at any moment all the
// tokens a process uses must live in the same configuration. Switching to
// another configuration (as each test does) needs every user of the module in
// the process to have closed it first; [Env.InitToken] reports
// [ErrModuleInUse] otherwise. Another process (a plugin, say) needs
// SOFTHSM2_CONF in its own environment: pass [Env.Environ] to it.
package softhsm
