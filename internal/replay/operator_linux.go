package replay

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the operator when the process that
// started it dies (a test binary that panics or times out skips its
// cleanups). Strictly, when the thread that started it exits: Go keeps its
// threads for the process's life, except those of locked goroutines.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
