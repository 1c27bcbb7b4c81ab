package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestHelpNamesEveryFlag: each subcommand's line in `uswitch` (usage)
// names every flag its -h lists, so the overview cannot fall behind the
// flags.
func TestHelpNamesEveryFlag(t *testing.T) {
	// "  -n\tusage" (a short boolean) or "  -name [value]\n    \tusage"
	flagLine := regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)(?:\t([^\n]*)|[^\n]*\n[ \t]+([^\n]*))`)
	for name, sc := range subcommands {
		if name == "ipvsadm" || name == "iptables" || name == "ebtables" || name == "conntrack" {
			continue // the tools' own option parsers; -h prints the tool's usage
		}
		var out, errb bytes.Buffer
		sc.run([]string{"-h"}, strings.NewReader(""), &out, &errb)
		flags := flagLine.FindAllStringSubmatch(errb.String(), -1)
		if len(flags) == 0 {
			t.Errorf("%s -h listed no flags:\n%s", name, errb.String())
			continue
		}
		// an alias ("same as -c") needs no naming of its own
		names := map[string][]string{}
		for _, f := range flags {
			usage := f[2] + f[3]
			if strings.HasPrefix(usage, "same as -") {
				continue // an alias: its flag is checked
			}
			names[usage] = append(names[usage], f[1])
		}
		for _, group := range names {
			named := false
			for _, f := range group {
				named = named || regexp.MustCompile(`(^|[^a-z-])--?`+regexp.QuoteMeta(f)+`\b`).MatchString(sc.help)
			}
			if !named {
				t.Errorf("uswitch %s: the help line names none of -%s: %q", name, strings.Join(group, ", -"), sc.help)
			}
		}
	}
}
