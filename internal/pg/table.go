package pg

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
)

var (
	//go:embed insert_message.sql
	insertMessageSQL string
	//go:embed insert_private_message.sql
	insertPrivateMessageSQL string
	//go:embed lock_message.sql
	lockMessageSQL string
	//go:embed lock_private_message.sql
	lockPrivateMessageSQL string
	//go:embed copy_lock_message.sql
	copyLockMessageSQL string
	//go:embed copy_lock_private_message.sql
	copyLockPrivateMessageSQL string
	//go:embed delete_message.sql
	deleteMessageSQL string
	//go:embed delete_private_message.sql
	deletePrivateMessageSQL string
	//go:embed existing_message.sql
	existingMessageSQL string
	//go:embed existing_private_message.sql
	existingPrivateMessageSQL string
	//go:embed history_message_before.sql
	historyMessageBeforeSQL string
	//go:embed history_message_after.sql
	historyMessageAfterSQL string
	//go:embed history_private_before.sql
	historyPrivateBeforeSQL string
	//go:embed history_private_after.sql
	historyPrivateAfterSQL string
	//go:embed one_message.sql
	oneMessageSQL string
	//go:embed one_private_message.sql
	onePrivateMessageSQL string
	//go:embed edit_message.sql
	editMessageSQL string
	//go:embed edit_private_message.sql
	editPrivateMessageSQL string
)

// table is everything that differs between the kinds in PostgreSQL: the table, its columns, a
// record's row, and the statements on it. The code that writes and reads asks it and never
// branches on the kind, so that a column added to a message is added here and in the SQL.
type table struct {
	kind    message.Kind
	name    string
	columns []string
	// row is a record's values, in columns' order.
	row func(r *message.Record) []any
	// insert takes one array per column; delete returns the users of the rows it removed when
	// the table has them (returnsUsers); existing reads the stored rows of ids, recipient_id ''
	// where the table has none.
	insert, lock, copyLock, delete, existing string
	historyBefore, historyAfter              string
	// one reads one row whole, as history does; edit applies edits (edited's arrays).
	one, edit    string
	returnsUsers bool
}

var tables = [...]table{
	message.Public: {
		kind: message.Public, name: "chat_messages",
		columns: []string{"cache_id", "owner_id", "channel_id", "username", "content", "created_at", "stream_id"},
		row: func(r *message.Record) []any {
			return []any{r.CacheID, r.Message.OwnerID, r.Message.ChannelID, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID}
		},
		insert: insertMessageSQL, lock: lockMessageSQL, copyLock: copyLockMessageSQL, delete: deleteMessageSQL,
		existing: existingMessageSQL, historyBefore: historyMessageBeforeSQL, historyAfter: historyMessageAfterSQL,
		one: oneMessageSQL, edit: editMessageSQL,
	},
	message.Private: {
		kind: message.Private, name: "private_messages",
		columns: []string{"cache_id", "owner_id", "recipient_id", "username", "content", "created_at", "stream_id"},
		row: func(r *message.Record) []any {
			return []any{r.CacheID, r.Message.OwnerID, r.Message.RecipientID, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID}
		},
		insert: insertPrivateMessageSQL, lock: lockPrivateMessageSQL, copyLock: copyLockPrivateMessageSQL, delete: deletePrivateMessageSQL,
		existing: existingPrivateMessageSQL, historyBefore: historyPrivateBeforeSQL, historyAfter: historyPrivateAfterSQL,
		one: onePrivateMessageSQL, edit: editPrivateMessageSQL, returnsUsers: true,
	},
}

// edited is an edit's values, in the order the edit statement takes them: row's, then the
// version and the edit time.
func (t *table) edited(r *message.Record) []any { return append(t.row(r), r.Version, r.EditedAt) }

// tableOf is the table of kind.
func tableOf(kind message.Kind) *table { return &tables[kind] }

// columnArrays turns row's values of the records at idx into one typed array a value, as the
// writes' unnest takes them.
func columnArrays(row func(*message.Record) []any, recs []message.Record, idx []int) ([]any, error) {
	var cols []any
	for j, i := range idx {
		vals := row(&recs[i])
		if j == 0 {
			cols = make([]any, len(vals))
		}
		for c, v := range vals {
			switch v := v.(type) {
			case int64:
				if j == 0 {
					cols[c] = make([]int64, len(idx))
				}
				cols[c].([]int64)[j] = v
			case string:
				if j == 0 {
					cols[c] = make([]string, len(idx))
				}
				cols[c].([]string)[j] = v
			case time.Time:
				if j == 0 {
					cols[c] = make([]time.Time, len(idx))
				}
				cols[c].([]time.Time)[j] = v
			default:
				return nil, fmt.Errorf("value %d: no array of %T", c, v)
			}
		}
	}
	return cols, nil
}
