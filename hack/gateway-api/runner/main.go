// Command runner is the entrypoint of the conformance Job's image (hack/conformance.sh): it runs
// the compiled suite with the given arguments, streaming its output, then prints the
// ConformanceReport the suite wrote between marker lines, and the suite's exit status. The host
// reaches the cluster only through the API server, so `kubectl logs` is how the report gets out,
// and the image (FROM scratch) has no shell to `cat` it.
//
//	runner REPORT_PATH SUITE_BINARY [SUITE_ARGS...]
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// The markers hack/conformance.sh looks for; keep the two in step.
const (
	reportBegin = "=== kubeferry conformance report begin ==="
	reportEnd   = "=== kubeferry conformance report end ==="
	exitPrefix  = "=== kubeferry conformance exit status "
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: runner REPORT_PATH SUITE_BINARY [SUITE_ARGS...]")
		os.Exit(2)
	}
	reportPath, suite := os.Args[1], os.Args[2]
	cmd := exec.Command(suite, os.Args[3:]...)
	// One stream, so the log keeps the suite's own order of events.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	status := 0
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			fmt.Printf("runner: cannot run %s: %v\n", suite, err)
			status = 127
		} else {
			status = exit.ExitCode()
		}
	}
	// The suite writes the report in a cleanup, so it exists even when setup failed; a missing
	// one is said plainly rather than printed as an empty report.
	if data, err := os.ReadFile(reportPath); err != nil {
		fmt.Printf("runner: no report at %s: %v\n", reportPath, err)
	} else {
		fmt.Println(reportBegin)
		os.Stdout.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			fmt.Println()
		}
		fmt.Println(reportEnd)
	}
	fmt.Printf("%s%d ===\n", exitPrefix, status)
	os.Exit(status)
}
