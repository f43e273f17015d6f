//go:build chaos_ackfirst

package flush

// ackBeforeWrite: a deliberately broken build (tag chaos_ackfirst) that acks a batch before
// writing it, for the chaos suite to prove that it catches a broken guarantee. Never ship it.
const ackBeforeWrite = true
