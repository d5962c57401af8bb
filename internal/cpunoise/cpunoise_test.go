package cpunoise

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU this process has used so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestBurnStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(cancel context.CancelFunc, stdin io.Closer)
	}{
		{"when its context is done", func(cancel context.CancelFunc, _ io.Closer) { cancel() }},
		{"when its standard input closes", func(_ context.CancelFunc, stdin io.Closer) { _ = stdin.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, w := io.Pipe()
			done := make(chan struct{})
			before := cpuTime(t)
			go func() { Burn(ctx, 1, r); close(done) }()
			time.Sleep(500 * time.Millisecond)
			tc.stop(cancel, w)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Burn did not stop")
			}
			// Half a second of one core, on a machine that may be busy.
			if used := cpuTime(t) - before; used < 100*time.Millisecond {
				t.Errorf("Burn used %v of CPU in half a second at one core", used)
			}
		})
	}
}

func TestTheNoiseProcessStopsWhenItsParentGoes(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	ctx := context.Background()
	bin, err := Build(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctx, bin, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	// What a parent's death does to the pipe the noise reads.
	_ = p.stdin.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the noise process exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatal("the noise process went on after its standard input closed")
	}
}
