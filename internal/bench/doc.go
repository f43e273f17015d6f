// Package bench holds `make bench` (bench_test.go, build tag bench): each stage of chatpipe
// measured beside the limit of this machine for the same work, in one run, so that a noisy
// machine still gives honest ratios. Results are printed and written to bench/results/.
package bench
