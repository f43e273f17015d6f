// Package version holds chatpipe's version, written here once: CHANGELOG.md's newest entry
// (a test holds them together), printed by --version and exported in chatpipe_build_info.
package version

import (
	"runtime/debug"
	"slices"
)

// Number is the version of this release.
const Number = "0.5.0"

// Revision is the VCS commit the binary was built from (12 hex digits, with "-dirty" for a
// modified tree), or "unknown" outside a git checkout.
func Revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && rev != "unknown" {
		rev += "-dirty"
	}
	return rev
}

// String is what --version prints for the command name: "ingest 0.5.0 (commit 0123456789ab)".
func String(name string) string {
	return name + " " + Number + " (commit " + Revision() + ")"
}

// Asked reports whether a command line asks for the version: --version (or -version) as its
// first argument.
func Asked(args []string) bool {
	return len(args) > 0 && slices.Contains([]string{"--version", "-version"}, args[0])
}
