package keystore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twoway-hsm/twoway-hsm/keystore"
)

// TestClassify: a backend's error matches its keystore sentinel and stays
// itself (text, errors.Is); classifying twice wraps once; an error no kind
// fits, and nil, are returned as they are.
func TestClassify(t *testing.T) {
	errNoKey := errors.New("backend: no such key")
	errLocked := errors.New("backend: locked")
	kinds := []keystore.ErrorKind{{Backend: errNoKey, Store: keystore.ErrNotFound}, {Backend: errLocked, Store: keystore.ErrAuth}}

	err := keystore.Classify(fmt.Errorf("find id 01: %w", errNoKey), kinds)
	if !errors.Is(err, keystore.ErrNotFound) || !errors.Is(err, errNoKey) || errors.Is(err, keystore.ErrAuth) || err.Error() != "find id 01: backend: no such key" {
		t.Errorf("classified: %v", err)
	}
	var ke *keystore.KindError
	if again := keystore.Classify(err, kinds); again != err || !errors.As(again, &ke) || ke.Kind != keystore.ErrNotFound {
		t.Errorf("classified twice: %#v", again)
	}
	already := fmt.Errorf("%w: %w", keystore.ErrAuth, errLocked)
	if got := keystore.Classify(already, kinds); got != already {
		t.Errorf("an error that matches its sentinel already was wrapped: %#v", got)
	}
	other := errors.New("backend: something else")
	if got := keystore.Classify(other, kinds); got != other || keystore.Classify(nil, kinds) != nil {
		t.Errorf("an error no kind fits: %#v", got)
	}
}
