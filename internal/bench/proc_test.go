//go:build bench

package bench_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/*/stat CPU times: 100 on every Linux port Go runs on.
const clockTick = 100

// procStatus reads one "Key: value kB" field of /proc/pid/status in bytes.
func procStatus(pid int, key string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// hwm is a process' peak resident set size (VmHWM) in bytes.
func hwm(pid int) float64 { return procStatus(pid, "VmHWM") }

// cpuSeconds is the user+system CPU a process has used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / clockTick
}

// selfCPU is this test process' CPU: during the load phases, the load generator's.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineBusy is the CPU time every process on the machine has used (all cores, /proc/stat),
// and the time the hypervisor gave this VM's CPUs to others while they had work (steal).
func machineBusy() (busy, steal float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// user nice system idle iowait irq softirq steal guest guest_nice; guest time is counted
	// in user already.
	for i, v := range f[1:min(len(f), 9)] {
		x, _ := strconv.ParseFloat(v, 64)
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			steal = x
		default:
			busy += x
		}
	}
	return busy / clockTick, steal / clockTick
}

// cpuMeter measures how many cores each named process used over a phase.
type cpuMeter struct {
	start   time.Time
	pids    map[string]int
	before  map[string]float64
	self    float64
	machine float64
	steal   float64
}

func meterCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), pids: pids, before: map[string]float64{}, self: selfCPU()}
	m.machine, m.steal = machineBusy()
	for name, pid := range pids {
		m.before[name] = cpuSeconds(pid)
	}
	return m
}

// secondsOf is the CPU the named process used since the meter started.
func (m *cpuMeter) secondsOf(name string) float64 { return cpuSeconds(m.pids[name]) - m.before[name] }

// seconds is the CPU the listed processes used since the meter started.
func (m *cpuMeter) seconds() float64 {
	var sum float64
	for name := range m.pids {
		sum += m.secondsOf(name)
	}
	return sum
}

// String reports cores used per process, the load generator (this process), the machine, and
// what the machine used beyond those (PostgreSQL, the kernel).
func (m *cpuMeter) String() string {
	wall := time.Since(m.start).Seconds()
	names := slices.Sorted(maps.Keys(m.pids))
	var parts []string
	listed := 0.0
	for _, name := range names {
		c := m.secondsOf(name) / wall
		listed += c
		parts = append(parts, fmt.Sprintf("%s %.2f", name, c))
	}
	self := (selfCPU() - m.self) / wall
	busy, steal := machineBusy()
	machine := (busy - m.machine) / wall
	parts = append(parts, fmt.Sprintf("load generator %.2f", self), fmt.Sprintf("machine %.2f", machine),
		fmt.Sprintf("others (PostgreSQL, kernel) %.2f", max(0, machine-listed-self)), fmt.Sprintf("stolen by the hypervisor %.2f", (steal-m.steal)/wall))
	return "cores: " + strings.Join(parts, ", ")
}
