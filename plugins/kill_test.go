package plugins_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudflare/circl/hpke"

	"github.com/twoway-hsm/twoway-hsm/internal/roundtrip"
	"github.com/twoway-hsm/twoway-hsm/plugins"
	"github.com/twoway-hsm/twoway-hsm/testenv"
	"github.com/twoway-hsm/twoway-hsm/twoway"
)

// processGone waits up to d for pid to disappear (exited and reaped:
// neither running nor a zombie).
func processGone(pid int, d time.Duration) (bool, string) {
	deadline := time.Now().Add(d)
	state := ""
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true, ""
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "State:") {
				state = strings.TrimSpace(strings.TrimPrefix(l, "State:"))
			}
		}
		if time.Now().After(deadline) {
			return false, state
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillPluginDuringRequest kills the plugin with SIGKILL while a
// chunked request waits for it, for each backend: the request fails well
// within its deadline with an error wrapping ErrUnavailable, the killed
// process is reaped, and the next request succeeds through a new plugin
// process. A plugin killed after a request's key step does not affect the
// rest of that request.
func TestKillPluginDuringRequest(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			bk := provision(t, backend, nil)
			c := newClient(t, plugins.Config{Keys: bk.refs, Env: bk.env})
			ctx := ctxT(t, 60*time.Second)
			key, err := c.Key(ctx, bk.refs[0])
			if err != nil {
				t.Fatal(err)
			}
			pub := circlPub(t, key.KEM(), key.PublicKeyBytes())
			suite := hpke.NewSuite(hpke.KEM(key.KEM()), hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)
			receiver, err := twoway.NewRequestReceiverForKey(1, key, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
			if err != nil {
				t.Fatal(err)
			}
			sender, err := twoway.NewRequestSender(suite, 1, pub, nil)
			if err != nil {
				t.Fatal(err)
			}
			opts := []twoway.Option{twoway.EnableChunking(), twoway.WithMaxChunkPlaintextLen(roundtrip.ChunkLen)}
			if err := roundTrips(ctx, key, 2000); err != nil {
				t.Fatalf("first requests: %v", err)
			}

			// 1. The plugin dies while the request's ECDH is in it. SIGSTOP
			// first, so that the call is certainly in flight when SIGKILL
			// lands.
			pid := c.PIDs()[0]
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			if err := waitStopped(pid, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			req := make([]byte, 64<<10)
			rand.Read(req)
			sealer, err := sender.NewRequestSealer(bytes.NewReader(req), []byte("app/req"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			pr, pw := io.Pipe()
			// Passed, not captured: the variables are reused below.
			go func(pw *io.PipeWriter, sealer io.Reader) { _, err := io.Copy(pw, sealer); pw.CloseWithError(err) }(pw, sealer)
			const deadline = 10 * time.Second
			reqCtx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				o, err := receiver.NewRequestOpenerContext(reqCtx, pr, []byte("app/req"), opts...)
				if err == nil {
					_, err = io.ReadAll(o)
				}
				errc <- err
			}()
			select {
			case err := <-errc:
				t.Fatalf("the request finished while its plugin was stopped: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			killed := time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			select {
			case err = <-errc:
			case <-time.After(deadline):
				t.Fatal("the request did not return within its deadline after the plugin was killed")
			}
			took := time.Since(killed)
			pr.CloseWithError(errors.New("request abandoned"))
			t.Logf("in-flight request failed %v after SIGKILL: %v", took.Round(time.Microsecond), err)
			if !errors.Is(err, plugins.ErrUnavailable) {
				t.Fatalf("error %v does not wrap ErrUnavailable", err)
			}
			if took > deadline/2 {
				t.Fatalf("the request took %v to fail after the kill; its deadline was %v", took, deadline)
			}
			if gone, state := processGone(pid, 5*time.Second); !gone {
				t.Fatalf("killed plugin %d still there (state %s)", pid, state)
			}

			// 2. The next request succeeds: a new plugin process.
			if err := roundTrips(ctx, key, 3000); err != nil {
				t.Fatalf("requests after the kill: %v", err)
			}
			pid2 := c.PIDs()[0]
			if pid2 == pid {
				t.Fatalf("plugin pid %d was not replaced", pid)
			}

			// 3. Killed in the middle of a chunked body, after the key step:
			// the rest of the request and the response need no plugin.
			sealer, err = sender.NewRequestSealer(bytes.NewReader(req), []byte("app/req"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(sealer)
			if err != nil {
				t.Fatal(err)
			}
			half := len(body) / 2
			pr, pw = io.Pipe()
			resume := make(chan struct{})
			go func() {
				if _, err := pw.Write(body[:half]); err != nil {
					return
				}
				<-resume
				_, err := pw.Write(body[half:])
				pw.CloseWithError(err)
			}()
			o, err := receiver.NewRequestOpenerContext(ctx, pr, []byte("app/req"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 8<<10)
			if _, err := io.ReadFull(o, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, req[:len(got)]) {
				t.Fatal("request plaintext differs")
			}
			if err := killAndWait(pid2); err != nil {
				t.Fatal(err)
			}
			close(resume)
			if err := answer(o, req[len(got):], sealer.NewResponseOpener, []byte("still answered"), opts); err != nil {
				t.Fatalf("rest of the request and its response after the plugin died: %v", err)
			}
			if err := roundTrips(ctx, key, 10); err != nil {
				t.Fatalf("requests after the second kill: %v", err)
			}
		})
	}
}

// TestKillHost kills a server process that runs two plugin processes with
// SIGKILL: both plugins must exit within a second, and nothing must be
// left, not even a zombie. The test makes itself the child subreaper, so
// that the orphaned plugins become its children and it can see how they
// ended.
func TestKillHost(t *testing.T) {
	if err := setChildSubreaper(true); err != nil {
		testenv.Unavailable(t, "cannot become a child subreaper: "+err.Error())
	}
	defer setChildSubreaper(false)
	bk := softKeys(t, nil)
	h := startHelperServer(t, helperConfig{Refs: bk.refs, Env: bk.env, Rounds: 4, Processes: 2})
	if len(h.plugins) != 2 {
		t.Fatalf("helper runs %d plugins, want 2", len(h.plugins))
	}
	if err := syscall.Kill(h.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	h.cmd.Wait()
	h.waited = true
	for _, pid := range h.plugins {
		var ws syscall.WaitStatus
		for {
			wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			if err != nil {
				t.Fatalf("wait4(%d): %v", pid, err)
			}
			if wpid == pid {
				break
			}
			if time.Since(killed) > time.Second {
				t.Fatalf("plugin %d still running 1s after its host was killed", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("plugin %d ended %v after its host was killed: %v", pid, time.Since(killed).Round(time.Millisecond), describeWait(ws))
		if gone, state := processGone(pid, time.Second); !gone {
			t.Fatalf("plugin %d is still there (state %s)", pid, state)
		}
	}
}

func describeWait(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// setChildSubreaper sets or clears PR_SET_CHILD_SUBREAPER for this
// process.
func setChildSubreaper(on bool) error {
	v := uintptr(0)
	if on {
		v = 1
	}
	const prSetChildSubreaper = 36
	_, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, v, 0)
	if e != 0 {
		return e
	}
	return nil
}

// killAndWait kills pid with SIGKILL and waits until it is gone.
func killAndWait(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	if gone, state := processGone(pid, 5*time.Second); !gone {
		return fmt.Errorf("process %d still there (state %s)", pid, state)
	}
	return nil
}

// waitStopped waits until every thread of pid is stopped (SIGSTOP takes
// effect asynchronously: a thread that is running finishes what it does
// first).
func waitStopped(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		stopped := len(tasks) > 0
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				return err
			}
			// The state follows the parenthesised command name.
			i := strings.LastIndexByte(string(b), ')')
			if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within %v", pid, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestStoppedPluginRestarted: a plugin that stops taking requests (here
// stopped with SIGSTOP: its process and its sockets stay, so nothing looks
// dead) is retired once its request socket has been full, with nothing
// taken, for the channel's stall limit; the next calls run on a new
// process. Until then calls fail at their deadlines.
func TestStoppedPluginRestarted(t *testing.T) {
	bk := provision(t, "soft", nil)
	c := newClient(t, plugins.Config{Keys: bk.refs})
	ctx := ctxT(t, 90*time.Second)
	key, err := c.Key(ctx, bk.refs[0])
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := key.ECDHContext(ctx, peer.PublicKey().Bytes()); err != nil {
		t.Fatal(err)
	}
	old := c.PIDs()[0]
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(old, syscall.SIGCONT) })
	if err := waitStopped(old, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var calls, timedOut, unavailable int
	for {
		if time.Since(start) > 60*time.Second {
			t.Fatalf("after %d calls in %v (%d timed out, %d unavailable) no call has run on a new process", calls, time.Since(start).Round(time.Millisecond), timedOut, unavailable)
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := key.ECDHContext(cctx, peer.PublicKey().Bytes())
		cancel()
		calls++
		if err == nil {
			break
		}
		switch {
		case errors.Is(err, plugins.ErrUnavailable):
			unavailable++
		case errors.Is(err, context.DeadlineExceeded):
			timedOut++
		default:
			t.Fatalf("call %d: %v", calls, err)
		}
	}
	pids := c.PIDs()
	if len(pids) != 1 || pids[0] == old {
		t.Fatalf("a call succeeded with plugin processes %v; the stopped one was %d", pids, old)
	}
	if unavailable == 0 {
		t.Errorf("no call failed with ErrUnavailable before the restart (%d timed out)", timedOut)
	}
	if gone, state := processGone(old, 10*time.Second); !gone {
		t.Errorf("the stopped plugin %d is still there (%s)", old, state)
	}
	t.Logf("restarted after %v: %d calls, %d timed out, %d unavailable", time.Since(start).Round(time.Millisecond), calls, timedOut, unavailable)
}
