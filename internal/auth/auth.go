// Package auth holds ingest's bearer tokens and what each may do: read (the GET endpoints),
// write (the others) or both. The tokens in use can be replaced while requests are checked
// against them, which is how a token is rotated without a restart.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// Scope is what a token may do.
type Scope uint8

const (
	// Read is the GET endpoints: recent, history, the live tail, the rate limit.
	Read Scope = 1 << iota
	// Write is POST, PUT, PATCH and DELETE.
	Write
	// Both is a bare token's scope.
	Both = Read | Write
)

func (s Scope) String() string {
	switch s {
	case Read:
		return "read"
	case Write:
		return "write"
	case Both:
		return "read and write"
	}
	return "none"
}

// Limits of a token list: far above any real deployment's, low enough that a wrong file (a
// log, a key) is refused rather than taken as thousands of tokens.
const (
	MaxTokens   = 256
	MaxTokenLen = 1024
)

// Tokens is a set of tokens and their scopes. Only their SHA-256 sums are kept: a token is
// checked by comparing sums, all of the same length, in constant time.
type Tokens struct {
	sums   [][sha256.Size]byte
	scopes []Scope
}

// Parse reads a token list: tokens separated by commas or newlines (a file may hold one a line),
// each prefixed "read:" or "write:", or bare for both. Spaces around a token are ignored. A
// token listed twice has the scopes of both. Errors say which token is at fault by its place
// in the list, never by its value.
func Parse(list string) (*Tokens, error) {
	items := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '\n' })
	if len(items) > MaxTokens {
		return nil, fmt.Errorf("more than %d tokens", MaxTokens)
	}
	t := &Tokens{}
	for i, item := range items {
		token, scope := strings.TrimSpace(item), Both
		if rest, ok := strings.CutPrefix(token, "read:"); ok {
			token, scope = rest, Read
		} else if rest, ok := strings.CutPrefix(token, "write:"); ok {
			token, scope = rest, Write
		}
		if err := check(token); err != nil {
			return nil, fmt.Errorf("token %d of the list: %w", i+1, err)
		}
		t.add(sha256.Sum256([]byte(token)), scope)
	}
	// A list with no token at all (",", a blank file) is refused: read as "no auth", it would
	// open the API.
	if t.Len() == 0 {
		return nil, errors.New("no token in the list")
	}
	return t, nil
}

// check refuses what cannot be a bearer token in an Authorization header: control
// characters, spaces, non-ASCII.
func check(token string) error {
	switch {
	case token == "":
		return errors.New("empty (a stray comma, or a scope prefix with no token)")
	case len(token) > MaxTokenLen:
		return fmt.Errorf("longer than %d bytes", MaxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return errors.New("holds a space, a control character or a non-ASCII byte")
		}
	}
	return nil
}

func (t *Tokens) add(sum [sha256.Size]byte, scope Scope) {
	for i, s := range t.sums {
		if s == sum {
			t.scopes[i] |= scope
			return
		}
	}
	t.sums = append(t.sums, sum)
	t.scopes = append(t.scopes, scope)
}

// Join returns the tokens of t and u together (either may be nil; nil if both are).
func Join(t, u *Tokens) *Tokens {
	if t == nil || u == nil {
		if t == nil {
			return u
		}
		return t
	}
	out := &Tokens{}
	for _, set := range []*Tokens{t, u} {
		for i, sum := range set.sums {
			out.add(sum, set.scopes[i])
		}
	}
	return out
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.sums) }

// Count returns how many tokens have exactly scope s.
func (t *Tokens) Count(s Scope) int {
	n := 0
	for _, sc := range t.scopes {
		if sc == s {
			n++
		}
	}
	return n
}

// Scope returns what token may do: 0 for a token not in the set. It compares the token's sum
// with every one in the set, to the end, so that its time says nothing of the tokens.
func (t *Tokens) Scope(token string) Scope {
	sum := sha256.Sum256([]byte(token))
	var scope Scope
	for i := range t.sums {
		eq := subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
		scope |= t.scopes[i] & Scope(-eq)
	}
	return scope
}

// Keyring holds the tokens in use, which Replace swaps while requests are checked.
type Keyring struct {
	cur atomic.Pointer[Tokens]
}

// NewKeyring returns a keyring holding t.
func NewKeyring(t *Tokens) *Keyring {
	k := &Keyring{}
	k.cur.Store(t)
	return k
}

// Replace puts t in use; a request checked after it returns sees only t.
func (k *Keyring) Replace(t *Tokens) { k.cur.Store(t) }

// Tokens returns the tokens in use.
func (k *Keyring) Tokens() *Tokens { return k.cur.Load() }

// Scope returns what token may do with the tokens in use (0: unknown).
func (k *Keyring) Scope(token string) Scope { return k.cur.Load().Scope(token) }

// One returns the set of one bare token (both scopes), taken whole: INGEST_AUTH_TOKEN, from
// before scopes, may hold a comma or a "read:" of its own.
func One(token string) (*Tokens, error) {
	if err := check(token); err != nil {
		return nil, err
	}
	t := &Tokens{}
	t.add(sha256.Sum256([]byte(token)), Both)
	return t, nil
}
