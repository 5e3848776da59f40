// Package suite holds the official Gateway API conformance test, compiled here (in the wrapper
// module, whose go.sum covers its test dependencies) with `go test -c` by hack/conformance.sh.
// It is upstream's conformance_test.go verbatim: every flag is the suite's own
// (sigs.k8s.io/gateway-api/conformance/utils/flags).
package suite

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
