// Package cpunoise is a competing CPU load on the machine during an
// incident replay's timeline, as another tenant of a shared machine would
// be. It runs as its own process (cmd/cpu-noise), so that the operating
// system shares the CPU between it, the control plane and the replay as
// it would, rather than the Go scheduler inside the replay.
package cpunoise

import (
	"context"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/loadshed/loadshed/internal/localcluster"
)

// slice is the period of a worker's duty cycle.
const slice = 10 * time.Millisecond

// Burn burns cores' worth of CPU (1.5 is one core and a half) until ctx
// is done or stdin reaches its end (the process that started this one has
// gone). Each of ceil(cores) workers spins for its share of every 10 ms
// and sleeps for the rest.
func Burn(ctx context.Context, cores float64, stdin io.Reader) {
	if cores <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	workers := int(math.Ceil(cores))
	runtime.GOMAXPROCS(workers + 1)
	duty := time.Duration(float64(slice) * cores / float64(workers))
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			burn(ctx, duty)
		}()
	}
	for range workers {
		<-done
	}
}

// burn spins for duty of every slice until ctx is done.
func burn(ctx context.Context, duty time.Duration) {
	runtime.LockOSThread()
	x := 1.0
	for ctx.Err() == nil {
		began := time.Now()
		for time.Since(began) < duty {
			for range 1000 {
				x = math.Sqrt(x + 1)
			}
		}
		if rest := slice - time.Since(began); rest > 0 {
			time.Sleep(rest)
		}
	}
	_ = x
}

// Build builds cmd/cpu-noise from the checkout at root into dir and
// returns the binary's path.
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "cpu-noise")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cpu-noise")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the CPU noise: %w: %s", err, out)
	}
	return bin, nil
}

// Process is a running noise process.
type Process struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

// limit bounds a noise process's life, whatever happens to the replay.
const limit = 2 * time.Hour

// Start starts bin burning cores' worth of CPU. It stops when Stop is
// called, when ctx is done, when this process ends (even killed: the
// noise reads its stdin from a pipe this process holds) and at the latest
// after limit.
func Start(ctx context.Context, bin string, cores float64) (*Process, error) {
	cmd := exec.CommandContext(ctx, bin, "--cores="+strconv.FormatFloat(cores, 'f', -1, 64), "--for="+limit.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the CPU noise: %w", err)
	}
	return &Process{cmd: cmd, stdin: stdin}, nil
}

// Stop ends the noise and waits for it.
func (n *Process) Stop() {
	_ = n.stdin.Close()
	localcluster.StopProcess(n.cmd)
}
