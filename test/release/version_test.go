package release_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// semver is SemVer 2.0 with a leading v and no build metadata (no +), as
// Helm chart versions can reuse it without the v.
var semver = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$`)

func TestVersionShPrintsSemVerWithoutBuildMetadata(t *testing.T) {
	v := strings.TrimSpace(run(t, nil, "hack/version.sh"))
	if !semver.MatchString(v) {
		t.Errorf("hack/version.sh printed %q, not a SemVer with a leading v and no +", v)
	}
	rev := revision(t)
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(rev) {
		t.Errorf("hack/version.sh revision printed %q, not a full commit", rev)
	}
	if tagged := strings.TrimSpace(run(t, nil, "git", "tag", "--points-at", "HEAD", "v*")); tagged == "" &&
		!strings.Contains(v, "-dev."+rev[:7]) && !strings.Contains(v, "-dev.g"+rev[:7]) {
		t.Errorf("hack/version.sh printed %q on an untagged commit, want it to name %s", v, rev[:7])
	}
	created := strings.TrimSpace(run(t, nil, "hack/version.sh", "created"))
	if !regexp.MustCompile(`^\d+$`).MatchString(created) {
		t.Errorf("hack/version.sh created printed %q, not seconds since the epoch", created)
	}
}

// TestEveryCommandPrintsItsVersion builds every command under cmd/ the way
// the release does (hack/build.sh) and runs it with --version: one line
// naming the stamped version and revision, exit status 0.
func TestEveryCommandPrintsItsVersion(t *testing.T) {
	cmds, err := filepath.Glob(filepath.Join(root(t), "cmd", "*", "main.go"))
	if err != nil || len(cmds) < 5 {
		t.Fatalf("commands under cmd/: %v, %v", cmds, err)
	}
	out := t.TempDir()
	const v, rev = "v9.8.7-test.1", "0123456789abcdef0123456789abcdef01234567"
	run(t, []string{"VERSION=" + v, "REVISION=" + rev}, "hack/build.sh", "-o", out+"/", "./cmd/...")
	for _, main := range cmds {
		name := filepath.Base(filepath.Dir(main))
		got, err := exec.Command(filepath.Join(out, name), "--version").Output()
		if err != nil {
			t.Errorf("cmd/%s --version: %v", name, err)
			continue
		}
		line := strings.TrimSuffix(string(got), "\n")
		want := " " + v + " (revision " + rev + ", " + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
		// Each is loadshed-<name>, but the plugin, which kubectl finds by its name.
		prefix := "loadshed-"
		if name == "kubectl-loadshed" {
			prefix = name + " "
		}
		if strings.Contains(line, "\n") || !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, want) {
			t.Errorf("cmd/%s --version printed %q, want one line starting %q and ending %q", name, got, prefix, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "manager")); err != nil {
		t.Error(err)
	}
}
