package main

import (
	"reflect"
	"testing"
)

func TestCutOwnFlags(t *testing.T) {
	var file string
	inst, rest, missing := cutOwnFlags([]string{"-L", "--lab", "a", "FORWARD", "--file=x", "--node", "n1", "-v", "--socket=/s"},
		map[string]*string{"--file": &file})
	if missing != "" || inst.lab != "a" || inst.node != "n1" || inst.socket != "/s" || file != "x" {
		t.Fatalf("got %+v file %q missing %q", inst, file, missing)
	}
	if want := []string{"-L", "FORWARD", "-v"}; !reflect.DeepEqual(rest, want) {
		t.Fatalf("rest %q, want %q", rest, want)
	}
	// --snapshot is not an option here: it is the tool's
	inst, rest, missing = cutOwnFlags([]string{"--snapshot", "d", "-L"}, map[string]*string{"--file": &file})
	if missing != "" || inst.lab != "default" || !reflect.DeepEqual(rest, []string{"--snapshot", "d", "-L"}) {
		t.Fatalf("got %+v rest %q missing %q", inst, rest, missing)
	}
	if _, _, missing = cutOwnFlags([]string{"-L", "--file"}, map[string]*string{"--file": &file}); missing != "--file" {
		t.Fatalf("missing %q, want --file", missing)
	}
}
