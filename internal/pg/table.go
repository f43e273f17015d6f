package pg

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
)

// The statements on a message table, each written once for both tables: text/template files
// rendered at start from the table's descriptor (sqlTable), so that a column is named in one
// place (table.columns) and no statement has a twin per kind.
var (
	//go:embed insert.sql
	insertTmpl string
	//go:embed edit.sql
	editTmpl string
	//go:embed lock.sql
	lockTmpl string
	//go:embed copy_lock.sql
	copyLockTmpl string
	//go:embed delete.sql
	deleteTmpl string
	//go:embed existing.sql
	existingTmpl string
	//go:embed one.sql
	oneTmpl string
	//go:embed history.sql
	historyTmpl string
	//go:embed react.sql
	reactTmpl string
	//go:embed unreact.sql
	unreactTmpl string
	//go:embed reactions.sql
	reactionsTmpl string
	//go:embed reacted.sql
	reactedTmpl string
	//go:embed mine.sql
	mineTmpl string
	//go:embed counts.sql
	countsTmpl string
)

// column is a column of a message table and its PostgreSQL type, as the writes' unnest arrays
// take it.
type column struct{ name, typ string }

// table is everything that differs between the kinds in PostgreSQL: the table, its columns, a
// record's row, and the statements on it. The code that writes and reads asks it and never
// branches on the kind, so that a column added to a message is added here (columns, row) and
// to the read order of rowFields.
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
	one, edit string
	// react applies reactions (reacted's arrays); unreact removes deleted messages' reactions;
	// reactions reads one message's for a user, reacted who reacted with an emoji, mine a
	// viewer's emoji on a page, counts some messages' counts.
	react, unreact, reactions, reacted, mine, counts string
	returnsUsers                                     bool
}

// placement is the column beside owner_id that places a message in its timeline, per kind.
var placement = [...]string{message.Public: "channel_id", message.Private: "recipient_id"}

// newTable describes kind's table name: its columns are a message's, with placement's column.
func newTable(kind message.Kind, name string) table {
	place := placement[kind]
	insert := []column{{"cache_id", "bigint"}, {"owner_id", "text"}, {place, "text"}, {"username", "text"},
		{"content", "text"}, {"created_at", "timestamptz"}, {"stream_id", "text"}}
	t := table{kind: kind, name: name, returnsUsers: kind == message.Private,
		row: func(r *message.Record) []any {
			p := r.Message.ChannelID
			if kind == message.Private {
				p = r.Message.RecipientID
			}
			return []any{r.CacheID, r.Message.OwnerID, p, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID}
		}}
	for _, c := range insert {
		t.columns = append(t.columns, c.name)
	}
	// What rowFields scans, in its order; a placement column the table lacks reads as ''.
	var read []string
	for _, c := range readOrder {
		switch {
		case c == "version":
			read = append(read, "GREATEST(version, cache_id) AS version")
		case c == "reactions":
			read = append(read, "COALESCE(reactions::text, '') AS reactions")
		case c == "reactions_version":
			read = append(read, "COALESCE(reactions_version, 0) AS reactions_version")
		case (c == "channel_id" || c == "recipient_id") && c != place:
			read = append(read, "'' AS "+c)
		default:
			read = append(read, c)
		}
	}
	singular := strings.TrimSuffix(name, "s")
	d := sqlTable{Name: name, Kind: kind.String(), Private: kind == message.Private, Insert: insert,
		Reactions: singular + "_reactions", Counts: singular + "_reaction_counts",
		Edit: append(slices.Clone(insert), column{"version", "bigint"}, column{"edited_at", "timestamptz"}),
		Read: strings.Join(read, ", "), Stored: strings.Join(read[:len(read)-2], ", ")}
	t.insert, t.edit, t.lock, t.copyLock = render(insertTmpl, d), render(editTmpl, d), render(lockTmpl, d), render(copyLockTmpl, d)
	t.delete, t.existing, t.one = render(deleteTmpl, d), render(existingTmpl, d), render(oneTmpl, d)
	t.react, t.unreact, t.reactions = render(reactTmpl, d), render(unreactTmpl, d), render(reactionsTmpl, d)
	t.reacted, t.mine, t.counts = render(reactedTmpl, d), render(mineTmpl, d), render(countsTmpl, d)
	t.historyBefore = render(historyTmpl, history{T: d, Op: "<", Order: "DESC"})
	t.historyAfter = render(historyTmpl, history{T: d, Op: ">", Order: "ASC"})
	return t
}

// readOrder is the order rowFields scans a row in.
var readOrder = []string{"cache_id", "owner_id", "recipient_id", "channel_id", "username", "content", "created_at", "version", "edited_at",
	"reactions", "reactions_version"}

var tables = [...]table{
	message.Public:  newTable(message.Public, "chat_messages"),
	message.Private: newTable(message.Private, "private_messages"),
}

// sqlTable is what the statement templates see of a table.
type sqlTable struct {
	Name, Kind string
	// Reactions and Counts are the table's reaction tables.
	Reactions, Counts string
	Private           bool
	Insert, Edit      []column
	// Read is the select list of a whole row, in rowFields' order, its reaction counts last
	// (from a join); Stored the message's own columns only.
	Read, Stored string
}

// history is the history template's data: the table and the page's direction.
type history struct {
	T         sqlTable
	Op, Order string
}

// seek is one range scan of a history page, on column.
type seek struct {
	history
	Column string
}

// With is the seek of the page on column.
func (h history) With(column string) seek { return seek{h, column} }

var sqlFuncs = template.FuncMap{
	// cols is the columns' names, each after prefix, comma-separated.
	"cols": func(cs []column, prefix string) string {
		names := make([]string, len(cs))
		for i, c := range cs {
			names[i] = prefix + c.name
		}
		return strings.Join(names, ", ")
	},
	// unnest is one typed array parameter per column: $1::bigint[], $2::text[], …
	"unnest": func(cs []column) string {
		ps := make([]string, len(cs))
		for i, c := range cs {
			ps[i] = fmt.Sprintf("$%d::%s[]", i+1, c.typ)
		}
		return strings.Join(ps, ", ")
	},
}

// render executes the statement template src on data; a template that does not render is a
// programming error, found by every test of the package.
func render(src string, data any) string {
	var b strings.Builder
	if err := template.Must(template.New("sql").Funcs(sqlFuncs).Parse(src)).Execute(&b, data); err != nil {
		panic(fmt.Sprintf("pg: rendering a statement: %v", err))
	}
	return b.String()
}

// edited is an edit's values, in the order the edit statement takes them: row's, then the
// version and the edit time.
func (t *table) edited(r *message.Record) []any { return append(t.row(r), r.Version, r.EditedAt) }

// reacted is a reaction's values, in the order the react statement takes them.
func reacted(r *message.Record) []any {
	return []any{r.CacheID, r.Reaction.Emoji, r.Reaction.UserID, r.Version, !r.Reaction.Add(), string(r.Reactions)}
}

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
			case bool:
				if j == 0 {
					cols[c] = make([]bool, len(idx))
				}
				cols[c].([]bool)[j] = v
			default:
				return nil, fmt.Errorf("value %d: no array of %T", c, v)
			}
		}
	}
	return cols, nil
}
