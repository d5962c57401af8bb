// Command cpu-noise burns a set amount of CPU until its standard input
// closes (the replay that started it has gone), it is interrupted, or its
// time is up: the incident replay's --cpu-noise runs it during each
// scenario's timeline. It only turns flags into internal/cpunoise's
// options.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/loadshed/loadshed/internal/cpunoise"
	"github.com/loadshed/loadshed/internal/version"
)

func main() {
	cores := flag.Float64("cores", 1, "Cores' worth of CPU to burn, e.g. 0.5 or 1.5.")
	limit := flag.Duration("for", time.Hour, "Stop after this long at the latest.")
	version.AddFlag(flag.CommandLine, "loadshed-cpu-noise")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	cpunoise.Burn(ctx, *cores, os.Stdin)
}
