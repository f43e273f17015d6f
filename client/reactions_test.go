package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/client"
)

// TestReactions: React and Unreact answer the counts and whether they changed; history with a
// Viewer marks the viewer's emoji; Reactors pages oldest first; the tail yields each change as
// a "reaction" event, two in a row included; the refusals are typed errors.
func TestReactions(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	a, err := c.Send(ctx, client.Draft{OwnerID: "ann", Content: "hello", Channel: "room"})
	if err != nil {
		t.Fatal(err)
	}
	target := client.Target{Channel: "room", CacheID: a.CacheID}
	events := make(chan client.Event, 16)
	go func() {
		for ev, err := range c.Tail(ctx, client.TailQuery{Timeline: client.Timeline{Channel: "room"}}) {
			if err != nil {
				return
			}
			if ev.Type == "reaction" {
				events <- ev
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the tail follows
	counts := func(r []client.Reaction) string { return fmt.Sprint(r) }
	for i, step := range []struct {
		add         bool
		user, emoji string
		want        string
		changed     bool
	}{
		{true, "ann", "👍", "[{👍 1 false}]", true},
		{true, "ann", "👍", "[{👍 1 false}]", false},
		{true, "bob", "👍", "[{👍 2 false}]", true},
		{true, "bob", "🎉", "[{👍 2 false} {🎉 1 false}]", true},
		{false, "ann", "👍", "[{👍 1 false} {🎉 1 false}]", true},
	} {
		f := c.React
		if !step.add {
			f = c.Unreact
		}
		r, err := f(ctx, target, step.emoji, step.user)
		if err != nil || counts(r.Reactions) != step.want || r.Changed != step.changed {
			t.Fatalf("step %d: %+v %v, want %s changed %t", i, r, err, step.want, step.changed)
		}
	}
	for i, want := range []string{"[{👍 1 false}]", "[{👍 2 false}]", "[{👍 2 false} {🎉 1 false}]", "[{👍 1 false} {🎉 1 false}]"} {
		select {
		case ev := <-events:
			if counts(ev.Entry.Reactions) != want || ev.Entry.CacheID != a.CacheID {
				t.Errorf("tail event %d: %+v, want %s", i, ev.Entry, want)
			}
		case <-ctx.Done():
			t.Fatalf("tail event %d never came", i)
		}
	}
	for p, err := range c.History(ctx, client.Timeline{Channel: "room"}, client.HistoryQuery{Backward: true, Viewer: "bob"}) {
		if err != nil || len(p.Messages) != 1 || counts(p.Messages[0].Reactions) != "[{👍 1 true} {🎉 1 true}]" {
			t.Fatalf("history as bob: %+v %v", p, err)
		}
	}
	users, next, err := c.Reactors(ctx, target, "👍", 0, 10)
	if err != nil || fmt.Sprint(users) != "[bob]" || next != 0 {
		t.Errorf("who reacted 👍: %v %d %v", users, next, err)
	}
	p, err := c.SendPrivate(ctx, client.Draft{OwnerID: "ann", RecipientID: "bob", Content: "psst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.React(ctx, client.Target{Private: true, CacheID: p.CacheID}, "👍", "eve"); !errors.Is(err, client.ErrNotParticipant) {
		t.Errorf("eve on ann and bob's message: %v, want ErrNotParticipant", err)
	}
	if _, err := c.React(ctx, target, "a b", "ann"); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("an emoji with a space: %v, want ErrInvalid", err)
	}
	if _, err := c.React(ctx, client.Target{Channel: "room", CacheID: a.CacheID + 1000}, "👍", "ann"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("an unknown message: %v, want ErrNotFound", err)
	}
}
