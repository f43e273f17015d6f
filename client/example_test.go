package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/client"
)

// exampleURL is the ingest the examples talk to: TestExamples starts a real one and runs them.
// (They carry no Output comment, so that go test does not run them without it.)
var exampleURL string

// Send a message to a channel; a retry with the same ClientMsgID returns the same id.
func ExampleClient_Send() {
	c, err := client.New(exampleURL)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	d := client.Draft{OwnerID: "alice", Username: "Alice", Content: "hello", Channel: "team-42.general", ClientMsgID: "welcome-1"}
	first, err := c.Send(ctx, d)
	if err != nil {
		panic(err)
	}
	again, err := c.Send(ctx, d) // a retry, as after a lost answer
	if err != nil {
		panic(err)
	}
	fmt.Println(first.CacheID == again.CacheID, again.Duplicate)
	// prints: true true
}

// Handle a refusal by its kind.
func ExampleError() {
	c, _ := client.New(exampleURL)
	_, err := c.Send(context.Background(), client.Draft{OwnerID: "alice", Content: ""})
	var e *client.Error
	if errors.Is(err, client.ErrInvalid) && errors.As(err, &e) {
		fmt.Println("fix field", e.Field)
	}
	// prints: fix field content
}

// Read a channel's whole history, newest page first.
func ExampleClient_History() {
	c, _ := client.New(exampleURL)
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.Send(ctx, client.Draft{OwnerID: "bob", Content: fmt.Sprintf("note %d", i), Channel: "notes"}); err != nil {
			panic(err)
		}
	}
	for page, err := range c.History(ctx, client.Timeline{Channel: "notes"}, client.HistoryQuery{Backward: true, Limit: 2}) {
		if err != nil {
			panic(err)
		}
		for _, m := range page.Messages {
			fmt.Print(m.Data.Content, "; ")
		}
		fmt.Println()
	}
	// prints:
	// note 1; note 2;
	// note 0;
}

// Follow a channel live; the tail resumes by itself after a cut or a cursor too old.
func ExampleClient_Tail() {
	c, _ := client.New(exampleURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		time.Sleep(300 * time.Millisecond) // once the tail follows
		_, _ = c.Send(ctx, client.Draft{OwnerID: "carol", Content: "live!", Channel: "lobby"})
	}()
	for ev, err := range c.Tail(ctx, client.TailQuery{Timeline: client.Timeline{Channel: "lobby"}}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.Type, ev.Entry.Data.Content)
		break
	}
	// prints: message live!
}

// TestExamples runs the examples against a real ingest and compares what they print with the
// "prints:" comment each carries.
func TestExamples(t *testing.T) {
	in := startIngest(t)
	exampleURL = in.url
	for _, ex := range []struct {
		name string
		run  func()
		want string
	}{
		{"Send", ExampleClient_Send, "true true\n"},
		{"Error", ExampleError, "fix field content\n"},
		{"History", ExampleClient_History, "note 1; note 2; \nnote 0; \n"},
		{"Tail", ExampleClient_Tail, "message live!\n"},
	} {
		if got := captured(t, ex.run); got != ex.want {
			t.Errorf("Example %s printed %q, want %q", ex.name, got, ex.want)
		}
	}
}

// captured runs f with os.Stdout read into a string.
func captured(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		var b strings.Builder
		_, _ = io.Copy(&b, r)
		done <- b.String()
	}()
	defer func() { os.Stdout = stdout }()
	f()
	w.Close()
	os.Stdout = stdout
	return <-done
}
