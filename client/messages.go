package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message is a message as chatpipe stores it.
type Message struct {
	OwnerID     string `json:"owner_id"`
	RecipientID string `json:"recipient_id,omitempty"`
	ChannelID   string `json:"channel_id,omitempty"`
	Username    string `json:"username"`
	Content     string `json:"content"`
	CreatedAt   string `json:"created_at"`
	EditedAt    string `json:"edited_at,omitempty"`
}

// Entry is a message with its id and version (its id until edited), and its reactions when it
// has any (their version apart: a reaction does not change the message's).
type Entry struct {
	CacheID          int64      `json:"cache_id"`
	Version          int64      `json:"version"`
	Data             Message    `json:"data"`
	Reactions        []Reaction `json:"reactions,omitempty"`
	ReactionsVersion int64      `json:"reactions_version,omitempty"`
}

// Reaction is one emoji's count on a message, in the order the emoji were first added; Me
// marks the emoji of the viewer a read named.
type Reaction struct {
	Emoji string `json:"emoji"`
	Count int64  `json:"count"`
	Me    bool   `json:"me,omitempty"`
}

// Draft is a message to send. ClientMsgID makes a retry return the first id instead of storing
// the message twice; the Client makes one up when it is empty. Channel "" is the default
// channel; RecipientID makes it private (SendPrivate).
type Draft struct {
	OwnerID, RecipientID, Channel string
	Username, Content             string
	CreatedAt                     time.Time
	ClientMsgID                   string
}

// Accepted is a sent message's id; Duplicate when a retry met its first acceptance.
type Accepted struct {
	CacheID   int64 `json:"cache_id"`
	Duplicate bool  `json:"duplicate"`
}

type sendBody struct {
	OwnerID     string `json:"owner_id"`
	RecipientID string `json:"recipient_id,omitempty"`
	ChannelID   string `json:"channel_id,omitempty"`
	Username    string `json:"username,omitempty"`
	Content     string `json:"content"`
	CreatedAt   string `json:"created_at,omitempty"`
	ClientMsgID string `json:"client_msg_id"`
}

func (d *Draft) body(channelInBody bool) sendBody {
	if d.ClientMsgID == "" {
		d.ClientMsgID = newClientMsgID()
	}
	b := sendBody{OwnerID: d.OwnerID, RecipientID: d.RecipientID, Username: d.Username, Content: d.Content, ClientMsgID: d.ClientMsgID}
	if channelInBody {
		b.ChannelID = d.Channel
	}
	if !d.CreatedAt.IsZero() {
		b.CreatedAt = d.CreatedAt.UTC().Format(time.RFC3339Nano)
	}
	return b
}

// Send sends a public message to d.Channel (the default channel when empty), retrying with the
// same client_msg_id until it is accepted and durable, refused, or the context ends. An error
// wrapping ErrUnavailable may mean it was accepted: send d again (same ClientMsgID) to know.
func (c *Client) Send(ctx context.Context, d Draft) (Accepted, error) {
	var a Accepted
	err := c.call(ctx, http.MethodPost, Timeline{Channel: d.Channel}.path(), nil, d.body(false), &a, true)
	return a, err
}

// SendPrivate sends a private message from d.OwnerID to d.RecipientID, as Send.
func (c *Client) SendPrivate(ctx context.Context, d Draft) (Accepted, error) {
	var a Accepted
	err := c.call(ctx, http.MethodPost, "/v1/private-messages", nil, d.body(false), &a, true)
	return a, err
}

// Result is one message's outcome in a batch: its id, or its error.
type Result struct {
	Accepted
	Err error
}

// SendBatch sends up to 1000 public messages (each in its Channel) and returns one Result per
// draft, in order. Messages refused for a reason a retry cures (rate limit, backlog full, not
// durable) are sent again, alone, until accepted or the context ends; the others keep their
// error.
func (c *Client) SendBatch(ctx context.Context, drafts []Draft) ([]Result, error) {
	out := make([]Result, len(drafts))
	pending := make([]int, len(drafts))
	for i := range drafts {
		pending[i] = i
		drafts[i].body(false) // gives each its client_msg_id, kept across the retries
	}
	var last error
	for attempt := 0; len(pending) > 0 && attempt < c.retry.Attempts; attempt++ {
		if attempt > 0 {
			if err := c.wait(ctx, attempt, last); err != nil {
				break
			}
		}
		items := make([]sendBody, len(pending))
		for k, i := range pending {
			items[k] = drafts[i].body(true)
		}
		var res struct {
			Results []struct {
				errorBody
				CacheID   int64 `json:"cache_id"`
				Duplicate bool  `json:"duplicate"`
			} `json:"results"`
		}
		if err := c.call(ctx, http.MethodPost, "/v1/messages/batch", nil, map[string]any{"messages": items}, &res, true); err != nil {
			return out, err
		}
		if len(res.Results) != len(pending) {
			return out, fmt.Errorf("chatpipe: a batch of %d answered %d results", len(pending), len(res.Results))
		}
		var again []int
		for k, i := range pending {
			r := res.Results[k]
			if r.Error == "" {
				out[i] = Result{Accepted: Accepted{CacheID: r.CacheID, Duplicate: r.Duplicate}}
				continue
			}
			status := itemStatus[r.Error]
			if status == 0 {
				status = http.StatusBadRequest
			}
			e := r.errorBody.toError(status, nil)
			out[i] = Result{Err: e}
			if e.retryable() {
				again, last = append(again, i), e
			}
		}
		pending = again
	}
	return out, nil
}

// itemStatus is the status a batch item's error code would have answered alone (the others:
// 400).
var itemStatus = map[string]int{"rate_limited": http.StatusTooManyRequests, "backlog_full": http.StatusServiceUnavailable,
	"unavailable": http.StatusServiceUnavailable, "valkey_full": http.StatusServiceUnavailable, "not_durable": http.StatusServiceUnavailable}

// Delete deletes a public message; channel "" is any channel (else 404 when the message is
// not of that channel). Deleting twice is harmless, so lost answers are retried.
func (c *Client) Delete(ctx context.Context, channel string, id int64) error {
	return c.call(ctx, http.MethodDelete, Timeline{Channel: channel}.path()+"/"+strconv.FormatInt(id, 10), nil, nil, nil, true)
}

// DeletePrivate deletes a private message.
func (c *Client) DeletePrivate(ctx context.Context, id int64) error {
	return c.call(ctx, http.MethodDelete, "/v1/private-messages/"+strconv.FormatInt(id, 10), nil, nil, nil, true)
}

// Edit is an edit of a message by its author.
type Edit struct {
	// Channel is the public message's channel ("" the default one); Private edits a private
	// message instead.
	Channel string
	Private bool
	CacheID int64
	OwnerID string
	Content string
	// IfMatch, when set, is the version the editor last saw: ErrVersionMismatch (an *Error
	// with the current Version) when the message has moved on.
	IfMatch int64
}

// Edit replaces a message's content and returns its new version. A lost answer is retried
// only without IfMatch (a retry of an applied conditional edit would meet its own version).
func (c *Client) Edit(ctx context.Context, e Edit) (int64, error) {
	path := Timeline{Channel: e.Channel}.path() + "/" + strconv.FormatInt(e.CacheID, 10)
	if e.Private {
		path = "/v1/private-messages/" + strconv.FormatInt(e.CacheID, 10)
	}
	var h http.Header
	if e.IfMatch > 0 {
		h = http.Header{"If-Match": {`"` + strconv.FormatInt(e.IfMatch, 10) + `"`}}
	}
	var out struct {
		Version int64 `json:"version"`
	}
	err := c.call(ctx, http.MethodPatch, path, h, map[string]string{"owner_id": e.OwnerID, "content": e.Content}, &out, e.IfMatch == 0)
	return out.Version, err
}

// Timeline is what a reader follows: a channel ("" and no User: the default channel) or a
// user's private messages. Its path is also where a channel's messages are sent, and, followed
// by an id, where one of them is edited or deleted.
type Timeline struct {
	Channel string
	User    string
}

func (t Timeline) path() string {
	switch {
	case t.User != "":
		return "/v1/users/" + url.PathEscape(t.User) + "/private-messages"
	case t.Channel != "":
		return "/v1/channels/" + url.PathEscape(t.Channel) + "/messages"
	}
	return "/v1/messages"
}

// Recent returns up to limit of the timeline's newest messages, oldest first (limit < 1: the
// whole ring).
func (c *Client) Recent(ctx context.Context, t Timeline, limit int) ([]Entry, error) {
	q := ""
	if limit > 0 {
		q = "?limit=" + strconv.Itoa(limit)
	}
	var out struct {
		Messages []Entry `json:"messages"`
	}
	err := c.call(ctx, http.MethodGet, t.path()+"/recent"+q, nil, nil, &out, true)
	return out.Messages, err
}

// Page is one page of history, oldest first.
type Page struct {
	Messages []Entry
	HasMore  bool
}

// HistoryQuery says where to read.
type HistoryQuery struct {
	// Backward pages from Cursor (0: the newest) to the oldest; else forward from Cursor (0:
	// the oldest) to the newest.
	Backward bool
	Cursor   int64
	// Limit is the page size (default 50, at most 200).
	Limit int
	// Viewer, when set, marks the emoji this user reacted with (Reaction.Me).
	Viewer string
}

// History returns the timeline's pages in the query's direction, each oldest first, until the
// last or an error (then yielded, and the end). Break out of the loop to stop early.
func (c *Client) History(ctx context.Context, t Timeline, q HistoryQuery) func(yield func(Page, error) bool) {
	return func(yield func(Page, error) bool) {
		cursor := q.Cursor
		limit := q.Limit
		if limit < 1 {
			limit = 50
		}
		for {
			v := url.Values{"limit": {strconv.Itoa(limit)}}
			if q.Viewer != "" {
				v.Set("viewer", q.Viewer)
			}
			switch {
			case q.Backward && cursor > 0:
				v.Set("before", strconv.FormatInt(cursor, 10))
			case !q.Backward:
				v.Set("after", strconv.FormatInt(cursor, 10))
			}
			var p struct {
				Messages []Entry `json:"messages"`
				HasMore  bool    `json:"has_more"`
			}
			if err := c.call(ctx, http.MethodGet, t.path()+"/history?"+v.Encode(), nil, nil, &p, true); err != nil {
				yield(Page{}, err)
				return
			}
			if !yield(Page{Messages: p.Messages, HasMore: p.HasMore}, nil) || !p.HasMore || len(p.Messages) == 0 {
				return
			}
			if q.Backward {
				cursor = p.Messages[0].CacheID
			} else {
				cursor = p.Messages[len(p.Messages)-1].CacheID
			}
		}
	}
}
