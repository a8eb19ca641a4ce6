package plugins_test

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twoway-hsm/twoway-hsm/internal/syncbuf"
	"github.com/twoway-hsm/twoway-hsm/kem"
	"github.com/twoway-hsm/twoway-hsm/keystore"
	"github.com/twoway-hsm/twoway-hsm/plugins"
)

// TestInlinePINRefused: NewClient refuses a key reference with a
// pin-value (in its query, as RFC 7512 puts it, or in its path; plain or
// percent-encoded; in Keys or in Args) before it starts anything: the
// plugin binary here would create a marker file if it ran. Neither the
// error nor any record logged at trace level (where go-plugin logs the
// command line it starts) has the PIN. A positive control shows that the
// same binary and logger do record a start and its command line.
func TestInlinePINRefused(t *testing.T) {
	const pin = "PIN-4711-never-logged"
	var encoded strings.Builder
	for i := range len(pin) {
		fmt.Fprintf(&encoded, "%%%02X", pin[i])
	}
	soft, _ := softKey(t, kem.DHKEMX25519HKDFSHA256)
	pkcs11 := "pkcs11:token=gw;id=%01"
	// plugin returns a plugin binary of the test's own that creates the
	// returned marker file if it runs.
	plugin := func(t *testing.T) (bin, marker string) {
		dir := t.TempDir()
		bin, marker = filepath.Join(dir, "twoway-hsm"), filepath.Join(dir, "plugin-ran")
		markerScript(t, bin, marker)
		return bin, marker
	}

	newLogger := func() (*slog.Logger, *syncbuf.Buffer) {
		buf := new(syncbuf.Buffer)
		return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: plugins.LevelTrace})), buf
	}

	t.Run("control", func(t *testing.T) {
		bin, marker := plugin(t)
		logger, logs := newLogger()
		_, err := plugins.NewClient(plugins.Config{Path: bin, Keys: []string{soft}, Logger: logger, StartTimeout: 5 * time.Second})
		if err == nil {
			t.Fatal("the marker script was accepted as a plugin")
		}
		if !exists(marker) {
			t.Fatalf("the marker script did not run: %v", err)
		}
		if !strings.Contains(logs.String(), "starting plugin") || !strings.Contains(logs.String(), soft) {
			t.Fatalf("go-plugin's record of the command line is not logged, so its absence below proves nothing:\n%s", logs.String())
		}
	})

	for _, tc := range []struct {
		name string
		keys []string
		args []string
	}{
		{name: "query", keys: []string{soft, pkcs11 + "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=" + pin}},
		{name: "path", keys: []string{pkcs11 + ";pin-value=" + pin, soft}},
		{name: "percent-encoded", keys: []string{pkcs11 + "?pin-value=" + encoded.String()}},
		{name: "twice", keys: []string{pkcs11 + "?pin-value=" + pin + "&pin-value=" + pin}},
		{name: "args", args: []string{"plugin", "--key", soft, "--key", pkcs11 + "?pin-value=" + pin}},
		{name: "args flag=value", args: []string{"plugin", "--key=" + pkcs11 + "?pin-value=" + pin}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, marker := plugin(t)
			logger, logs := newLogger()
			c, err := plugins.NewClient(plugins.Config{Path: bin, Keys: tc.keys, Args: tc.args, Logger: logger, StartTimeout: 5 * time.Second})
			if err == nil {
				c.Close()
				t.Fatal("a reference with a pin-value was accepted")
			}
			if exists(marker) {
				t.Errorf("the plugin binary ran (the PIN was on its command line): %.200v", err)
			}
			// A repeated pin-value is a malformed reference; all others
			// are inline secrets.
			if tc.name == "twice" {
				if !errors.Is(err, keystore.ErrInvalidRef) {
					t.Errorf("error %q does not wrap keystore.ErrInvalidRef", err)
				}
			} else if !errors.Is(err, keystore.ErrInlineSecret) {
				t.Errorf("error %q does not wrap keystore.ErrInlineSecret", err)
			}
			for _, secret := range []string{pin, encoded.String()} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error has the PIN: %.200v", err)
				}
				for line := range strings.Lines(logs.String()) {
					if strings.Contains(line, secret) {
						t.Errorf("a record has the PIN: %s", line)
					}
				}
			}
			t.Logf("refused: %v", err)
		})
	}

	// Client.Key does not repeat a pin-value of a name it does not know.
	t.Run("Key", func(t *testing.T) {
		c := newClient(t, plugins.Config{Keys: []string{soft}})
		_, err := c.Key(ctxT(t, 10*time.Second), pkcs11+";pin-value="+pin)
		if !errors.Is(err, plugins.ErrUnknownKey) {
			t.Fatalf("Key: %v; want ErrUnknownKey", err)
		}
		if strings.Contains(err.Error(), pin) {
			t.Fatalf("the error has the PIN: %v", err)
		}
	})
}
