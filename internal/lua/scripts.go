// Package lua holds chatpipe's Lua scripts and their runner. Each script is an embedded .lua
// file with its contract at the top, made of shared preludes (common.lua, entry.lua,
// batch.lua, ring.lua) and its own body, and called by SHA with a reload on NOSCRIPT. Keys
// reach scripts only through KEYS, built by package keyspace; the operations that call them,
// and what their replies mean, are package store's.
package lua

import _ "embed"

var (
	//go:embed common.lua
	commonSrc string
	//go:embed entry.lua
	entrySrc string
	//go:embed batch.lua
	batchSrc string
	//go:embed ring.lua
	ringSrc string
	//go:embed enqueue.lua
	enqueueSrc string
	//go:embed ratelimit.lua
	rateLimitSrc string
	//go:embed delete.lua
	deleteSrc string
	//go:embed edit.lua
	editSrc string
	//go:embed react.lua
	reactSrc string
	//go:embed react_one.lua
	reactOneSrc string
	//go:embed react_many.lua
	reactManySrc string
	//go:embed unring.lua
	unringSrc string
	//go:embed zring.lua
	zringSrc string
	//go:embed mirror.lua
	mirrorSrc string
)

// The scripts of the store, each with its preludes.
var (
	// Enqueue accepts messages of one kind, one or a batch, in either layout.
	Enqueue = NewScript("enqueue", commonSrc, entrySrc, batchSrc, enqueueSrc)
	// RateLimit takes (or gives back) a user's tokens on the user's own slot.
	RateLimit = NewScript("ratelimit", commonSrc, rateLimitSrc)
	// Delete deletes a message from its rings and records the deletion on its stream.
	Delete = NewScript("delete", entrySrc, ringSrc, deleteSrc)
	// Edit accepts an edit of one message.
	Edit = NewScript("edit", commonSrc, entrySrc, ringSrc, editSrc)
	// React adds or removes one user's emoji on a message.
	React = NewScript("react", commonSrc, entrySrc, reactSrc, reactOneSrc)
	// ReactMany applies toggles in order in one call.
	ReactMany = NewScript("react_many", commonSrc, entrySrc, reactSrc, reactManySrc)
	// Unring removes a message from list rings.
	Unring = NewScript("unring", ringSrc, unringSrc)
	// ZRing adds entries to a sorted-set ring, trims it and renews its idle TTL.
	ZRing = NewScript("zring", zringSrc)
	// Mirror moves entries of a legacy flush list into a flush stream.
	Mirror = NewScript("mirror", entrySrc, mirrorSrc)
)

// All are the store's scripts, for loading ahead of their first use.
var All = []*Script{Enqueue, RateLimit, Delete, Edit, React, ReactMany, Unring, ZRing, Mirror}
