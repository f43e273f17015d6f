package api

import "encoding/json"

// The fast paths below decode the request shapes nearly every request has — a flat object of
// known keys with string values, a batch {"messages":[...]} of such objects — without
// encoding/json's reflection, which was a quarter of ingest's CPU at full batch load. They run
// only on valid JSON that checkStructure accepted (no repeated keys, bounded depth) and give
// up on anything else (another key, a key spelled in another case, a null, a number, ...):
// then encoding/json decodes as before, with its errors. A success must be what encoding/json
// would have decoded; FuzzFastDecode holds them to that.

// fastDecoder is a request that has a fast path.
type fastDecoder interface {
	decodeFast(body []byte) bool
}

func (r *publicRequest) field(k []byte) *string {
	switch string(k) {
	case "owner_id":
		return &r.OwnerID
	case "username":
		return &r.Username
	case "content":
		return &r.Content
	case "created_at":
		return &r.CreatedAt
	case "client_msg_id":
		r.ClientMsgID = new(string)
		return r.ClientMsgID
	}
	return nil
}

func (r *publicRequest) decodeFast(body []byte) bool {
	var v publicRequest
	if !decodeFlat(body, v.field) {
		return false
	}
	*r = v
	return true
}

func (r *editRequest) decodeFast(body []byte) bool {
	var v editRequest
	field := func(k []byte) *string {
		switch string(k) {
		case "owner_id":
			return &v.OwnerID
		case "content":
			return &v.Content
		}
		return nil
	}
	if !decodeFlat(body, field) {
		return false
	}
	*r = v
	return true
}

func (r *batchItem) decodeFast(body []byte) bool {
	var v batchItem
	field := func(k []byte) *string {
		if string(k) == "channel_id" {
			v.ChannelID = new(string)
			return v.ChannelID
		}
		return v.publicRequest.field(k)
	}
	if !decodeFlat(body, field) {
		return false
	}
	*r = v
	return true
}

func (r *privateRequest) decodeFast(body []byte) bool {
	var v privateRequest
	field := func(k []byte) *string {
		if string(k) == "recipient_id" {
			return &v.RecipientID
		}
		return v.publicRequest.field(k)
	}
	if !decodeFlat(body, field) {
		return false
	}
	*r = v
	return true
}

// decodeFast splits the batch into its items, sub-slices of body.
func (r *batchRequest) decodeFast(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	k, i, ok := plainString(body, skipSpace(body, i+1))
	if !ok || string(k) != "messages" {
		return false
	}
	if i = skipSpace(body, i); i >= len(body) || body[i] != ':' {
		return false
	}
	if i = skipSpace(body, i+1); i >= len(body) || body[i] != '[' {
		return false
	}
	var items []json.RawMessage
	for i = skipSpace(body, i+1); i < len(body) && body[i] != ']'; {
		if body[i] != '{' {
			return false
		}
		end := objectEnd(body, i)
		items = append(items, body[i:end])
		if i = skipSpace(body, end); i < len(body) && body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	if i >= len(body) {
		return false
	}
	if i = skipSpace(body, i+1); i >= len(body) || body[i] != '}' || skipSpace(body, i+1) != len(body) {
		return false
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	r.Messages = items
	return true
}

// decodeFlat decodes a flat object whose keys field knows (it returns where each value goes)
// and whose values are strings.
func decodeFlat(body []byte, field func(k []byte) *string) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	for {
		k, next, ok := plainString(body, i)
		if !ok {
			return false
		}
		dst := field(k)
		if dst == nil {
			return false
		}
		if i = skipSpace(body, next); i >= len(body) || body[i] != ':' {
			return false
		}
		if i = skipSpace(body, i+1); i >= len(body) || body[i] != '"' {
			return false
		}
		end := stringEnd(body, i)
		if !decodeString(body[i:end], dst) {
			return false
		}
		i = skipSpace(body, end)
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// decodeString sets dst to the JSON string quoted (with its quotes): a slice copy when it holds
// no escape, else encoding/json's reading of it.
func decodeString(quoted []byte, dst *string) bool {
	inner := quoted[1 : len(quoted)-1]
	for _, c := range inner {
		if c == '\\' {
			return json.Unmarshal(quoted, dst) == nil
		}
	}
	*dst = string(inner)
	return true
}

// plainString reads the string at body[i] when it holds no escape (a key, here); it returns
// its contents and the index after its closing quote.
func plainString(body []byte, i int) ([]byte, int, bool) {
	if i >= len(body) || body[i] != '"' {
		return nil, i, false
	}
	end := stringEnd(body, i)
	for _, c := range body[i+1 : end-1] {
		if c == '\\' {
			return nil, i, false
		}
	}
	return body[i+1 : end-1], end, true
}

// stringEnd returns the index after the closing quote of the (valid) string at body[i].
func stringEnd(body []byte, i int) int {
	for i++; body[i] != '"'; i++ {
		if body[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// objectEnd returns the index after the (valid) object or array at body[i].
func objectEnd(body []byte, i int) int {
	depth := 0
	for ; ; i++ {
		switch body[i] {
		case '"':
			i = stringEnd(body, i) - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
}

func skipSpace(body []byte, i int) int {
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	return i
}
