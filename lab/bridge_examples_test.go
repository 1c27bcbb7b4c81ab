package lab

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestBridgeExampleLabs runs the demos of examples/labs/docker-bridge.toml
// and k8s-bridge.toml: every step that should work works, and the one
// that should fail (k8s-bridge's ClusterIP with
// bridge-nf-call-iptables=0) fails.
func TestBridgeExampleLabs(t *testing.T) {
	needRoot(t)
	for _, file := range []string{"docker-bridge.toml", "k8s-bridge.toml"} {
		t.Run(file, func(t *testing.T) {
			c, err := Load(filepath.Join("..", "examples", "labs", file))
			if err != nil {
				t.Fatal(err)
			}
			p := uniquePrefix()
			c = c.Rename(func(s string) string {
				if i := strings.LastIndex(s, "-"); i >= 0 {
					return p + s[i:]
				}
				return p + "-" + s
			})
			l := upLab(t, c)
			var out bytes.Buffer
			if err := l.Demo(&out); err != nil {
				t.Errorf("%v\n%s", err, out.String())
			}
			t.Logf("\n%s", out.String())
		})
	}
}
