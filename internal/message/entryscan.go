package message

import (
	"strconv"
	"unicode/utf8"
)

// ringEntry is the payload of a flush-stream entry: {"cache_id":N,"version":V,"data":{...}}
// (entries written before edits have no version).
type ringEntry struct {
	CacheID *int64   `json:"cache_id"`
	Version *int64   `json:"version"`
	Data    *Message `json:"data"`
}

// scanEntry decodes a payload as ingest's scripts write it — one object with cache_id and data,
// data holding only the message's string fields, no escapes — without reflection: it takes a
// quarter of encoding/json's time and was the largest cost of a worker draining a backlog. It
// reports ok=false for anything else (escapes, other keys or types, invalid UTF-8, bad syntax),
// which then takes encoding/json; FuzzScanEntry holds both to the same answers.
func scanEntry(p string) (e ringEntry, ok bool) {
	s := scanner{p: p}
	var id, version int64
	var m Message
	if !s.consume('{') {
		return e, false
	}
	for first := true; ; first = false {
		if s.consume('}') {
			if first { // {} is valid but not ours
				return e, false
			}
			break
		}
		if !first && !s.consume(',') {
			return e, false
		}
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return e, false
		}
		switch key {
		case "cache_id":
			if id, ok = s.int(); !ok {
				return e, false
			}
			e.CacheID = &id
		case "version":
			if version, ok = s.int(); !ok {
				return e, false
			}
			e.Version = &version
		case "data":
			if !s.fields(&m) {
				return e, false
			}
			e.Data = &m
		default:
			return e, false
		}
	}
	s.space()
	return e, s.i == len(s.p)
}

type scanner struct {
	p string
	i int
}

func (s *scanner) space() {
	for s.i < len(s.p) && (s.p[s.i] == ' ' || s.p[s.i] == '\t' || s.p[s.i] == '\n' || s.p[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) consume(c byte) bool {
	s.space()
	if s.i < len(s.p) && s.p[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string with no escapes, no control characters and valid UTF-8.
func (s *scanner) str() (string, bool) {
	if !s.consume('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.p) {
		switch c := s.p[s.i]; {
		case c == '"':
			v := s.p[start:s.i]
			s.i++
			return v, utf8.ValidString(v)
		case c == '\\' || c < 0x20:
			return "", false
		}
		s.i++
	}
	return "", false
}

// int reads a JSON integer that fits an int64 (no fraction, no exponent, no leading zero).
func (s *scanner) int() (int64, bool) {
	s.space()
	start := s.i
	if s.i < len(s.p) && s.p[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.p) && s.p[s.i] >= '0' && s.p[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.p[digits] == '0' && s.i-digits > 1) {
		return 0, false
	}
	if s.i < len(s.p) && (s.p[s.i] == '.' || s.p[s.i] == 'e' || s.p[s.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(s.p[start:s.i], 10, 64)
	return n, err == nil
}

// fields reads the data object into m (merging, as encoding/json does with a repeated key).
func (s *scanner) fields(m *Message) bool {
	if !s.consume('{') {
		return false
	}
	for first := true; ; first = false {
		if s.consume('}') {
			return true
		}
		if !first && !s.consume(',') {
			return false
		}
		key, ok := s.str()
		if !ok || !s.consume(':') {
			return false
		}
		v, ok := s.str()
		if !ok {
			return false
		}
		switch key {
		case "owner_id":
			m.OwnerID = v
		case "recipient_id":
			m.RecipientID = v
		case "channel_id":
			m.ChannelID = v
		case "username":
			m.Username = v
		case "content":
			m.Content = v
		case "created_at":
			m.CreatedAt = v
		case "edited_at":
			m.EditedAt = v
		default:
			return false
		}
	}
}
