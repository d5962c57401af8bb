package promserver

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill Prometheus when the process that
// started it dies (a test binary that panics or times out skips its
// cleanups), as the replay does for the operator.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
