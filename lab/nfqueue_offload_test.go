package lab

import (
	"os"
	"strings"
	"testing"
)

// TestNFQueueOffloadKey: [nfqueue] offload = true is read (the example
// experiment with the key added), and is off without it.
func TestNFQueueOffloadKey(t *testing.T) {
	src, err := os.ReadFile("../examples/experiments/nfqueue-kill.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("nfqueue-kill.toml", src)
	if err != nil {
		t.Fatal(err)
	}
	if c.NFQueue == nil || c.NFQueue.Offload {
		t.Fatalf("nfqueue %+v: want offload off by default", c.NFQueue)
	}
	on := strings.Replace(string(src), "queues = \"5:6\"\n", "queues = \"5:6\"\noffload = true\n", 1)
	if c, err = Parse("nfqueue-kill.toml", []byte(on)); err != nil {
		t.Fatal(err)
	}
	if !c.NFQueue.Offload {
		t.Errorf("offload = true not read: %+v", c.NFQueue)
	}
	bad := strings.Replace(string(src), "queues = \"5:6\"\n", "queues = \"5:6\"\noffload = \"yes\"\n", 1)
	if _, err := Parse("nfqueue-kill.toml", []byte(bad)); err == nil {
		t.Errorf("offload = \"yes\": no error")
	} else {
		t.Logf("%v", err)
	}
}
