package lab

import (
	"strings"
	"testing"
)

// TestAddFaultsExperimentTables: a --faults file brings [experiment]
// keys, [[workload]], [[step]] and [[fault]] tables; a bad one changes
// nothing and names its file and line.
func TestAddFaultsExperimentTables(t *testing.T) {
	c, err := Parse("lab.toml", []byte("[experiment]\nseed = 3\nduration = \"5s\"\n[[namespace]]\nname = \"a\"\nserver = [{ kind = \"http\", port = 80 }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	good := "[experiment]\nshort = \"2s\"\n[[workload]]\nname = \"w\"\nkind = \"http\"\nfrom = \"a\"\nto = \"http://10.0.0.1/\"\nrate = 5\n" +
		"[[step]]\nat = \"1s\"\nstop_server = \"a:80\"\n"
	if err := c.AddFaults("more.toml", []byte(good)); err != nil {
		t.Fatal(err)
	}
	if c.Experiment.Seed != 3 || c.Experiment.Duration != "5s" || c.Experiment.Short != "2s" || len(c.Workloads) != 1 || len(c.Steps) != 1 {
		t.Errorf("merged: %+v %+v %+v", c.Experiment, c.Workloads, c.Steps)
	}
	for _, tc := range []struct{ text, want string }{
		{"[[workload]]\nname = \"w2\"\nkind = \"http\"\nfrom = \"a\"\nto = \"http://x/\"\nrate = 5\nbogus = 1\n", "bad.toml:7: workload.bogus: unknown key"},
		{"[[workload]]\nname = \"w\"\nkind = \"http\"\nfrom = \"a\"\nto = \"http://x/\"\nrate = 5\n", `bad.toml: workload: name "w" appears twice`},
		{"[[step]]\nat = \"1s\"\nstop_server = \"a:81\"\n", "no built-in server on port 81"},
	} {
		err := c.AddFaults("bad.toml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
		if len(c.Workloads) != 1 || len(c.Steps) != 1 {
			t.Fatalf("a refused file changed the lab: %d workloads, %d steps", len(c.Workloads), len(c.Steps))
		}
	}
	r := c.Rename(func(n string) string { return "x" + n })
	if r.Workloads[0].From != "xa" || r.Steps[0].StopServer != "xa:80" || c.Workloads[0].From != "a" {
		t.Errorf("Rename: %+v %+v (original %+v)", r.Workloads, r.Steps, c.Workloads)
	}
}
