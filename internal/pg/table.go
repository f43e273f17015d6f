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
	// one reads the owner, recipient and channel of one row ('' where the table has none).
	one          string
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
		one: oneMessageSQL,
	},
	message.Private: {
		kind: message.Private, name: "private_messages",
		columns: []string{"cache_id", "owner_id", "recipient_id", "username", "content", "created_at", "stream_id"},
		row: func(r *message.Record) []any {
			return []any{r.CacheID, r.Message.OwnerID, r.Message.RecipientID, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID}
		},
		insert: insertPrivateMessageSQL, lock: lockPrivateMessageSQL, copyLock: copyLockPrivateMessageSQL, delete: deletePrivateMessageSQL,
		existing: existingPrivateMessageSQL, historyBefore: historyPrivateBeforeSQL, historyAfter: historyPrivateAfterSQL,
		one: onePrivateMessageSQL, returnsUsers: true,
	},
}

// tableOf is the table of kind.
func tableOf(kind message.Kind) *table { return &tables[kind] }

// arrays turns the rows of the records at idx into one typed array a column, as the insert's
// unnest takes them.
func (t *table) arrays(recs []message.Record, idx []int) ([]any, error) {
	cols := make([]any, len(t.columns))
	for j, i := range idx {
		for c, v := range t.row(&recs[i]) {
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
				return nil, fmt.Errorf("column %s: no array of %T", t.columns[c], v)
			}
		}
	}
	return cols, nil
}
