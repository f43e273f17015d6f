package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Target names a message to react to: a public one in Channel ("" the default channel), or a
// private one.
type Target struct {
	Channel string
	Private bool
	CacheID int64
}

func (t Target) path() string {
	if t.Private {
		return "/v1/private-messages/" + strconv.FormatInt(t.CacheID, 10)
	}
	return Timeline{Channel: t.Channel}.path() + "/" + strconv.FormatInt(t.CacheID, 10)
}

// Reactions is a message's reaction counts after a toggle, their version, and whether the
// toggle changed them (adding a reaction twice, or removing one that is not there, does not).
type Reactions struct {
	CacheID          int64      `json:"cache_id"`
	Reactions        []Reaction `json:"reactions"`
	ReactionsVersion int64      `json:"reactions_version"`
	Changed          bool       `json:"changed"`
}

// React adds user's emoji to a message. Adding twice changes nothing, so a lost answer is
// retried. ErrNotParticipant: a private message of other users; ErrTooManyReactions: the
// message has the most distinct emoji allowed.
func (c *Client) React(ctx context.Context, t Target, emoji, user string) (Reactions, error) {
	return c.toggle(ctx, http.MethodPut, t, emoji, user)
}

// Unreact removes user's emoji from a message, as React adds it.
func (c *Client) Unreact(ctx context.Context, t Target, emoji, user string) (Reactions, error) {
	return c.toggle(ctx, http.MethodDelete, t, emoji, user)
}

func (c *Client) toggle(ctx context.Context, method string, t Target, emoji, user string) (Reactions, error) {
	var out Reactions
	err := c.call(ctx, method, t.path()+"/reactions/"+url.PathEscape(emoji)+"/"+url.PathEscape(user), nil, nil, &out, true)
	return out, err
}

// Reactors returns the users who reacted with emoji on a message, oldest first, in pages of
// limit (0: 50, at most 100) from the cursor after (0: the first); next is the cursor of the
// next page, 0 after the last.
func (c *Client) Reactors(ctx context.Context, t Target, emoji string, after int64, limit int) (users []string, next int64, err error) {
	v := url.Values{}
	if after > 0 {
		v.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Users []string `json:"users"`
		Next  int64    `json:"next"`
	}
	q := ""
	if len(v) > 0 {
		q = "?" + v.Encode()
	}
	err = c.call(ctx, http.MethodGet, t.path()+"/reactions/"+url.PathEscape(emoji)+q, nil, nil, &out, true)
	return out.Users, out.Next, err
}
