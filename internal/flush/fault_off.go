//go:build !chaos_ackfirst

package flush

// ackBeforeWrite is false in every real build. The chaos suite builds the worker with the tag
// chaos_ackfirst to break the ack-after-commit guarantee on purpose and show that it notices.
const ackBeforeWrite = false
